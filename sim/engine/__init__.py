"""The SimPy engine (no torch): devices, hosts and links, the network, lossy and jittery links (loss,
recovery, jitter), the scenario turned into engine objects, and the event loop that produces a timeline."""
