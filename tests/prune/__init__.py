"""Tests of sim.prune."""
