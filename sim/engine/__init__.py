"""The SimPy engine (no torch): devices, hosts and links, the network, the scenario turned into engine objects,
and the event loop that produces a timeline."""
