"""Tests of sim.report."""
