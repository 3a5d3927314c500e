"""Tests of sim.testbed."""
