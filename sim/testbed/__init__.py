"""Real runs: the same split executed by one process per device over TCP (loopback or shaped veths in
network namespaces), and its validation against the simulator."""
