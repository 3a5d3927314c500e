"""Tests of sim.workload."""
