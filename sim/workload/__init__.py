"""The contract the engine reads (numpy only): tasks, messages, the workload plan from ownership and need, and
wire formats."""
