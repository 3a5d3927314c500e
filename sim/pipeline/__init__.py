"""One run: prepare the workload (torch), calibrate the devices, evaluate it on the engine, through the build
cache, and describe it."""
