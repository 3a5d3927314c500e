"""Tests of sim.pipeline."""
