"""Pure functions from a workload and a timeline to tables and summaries: counters, critical path, curves,
Pareto fronts, service latency."""
