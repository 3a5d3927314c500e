"""Tests of sim.study."""
