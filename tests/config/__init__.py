"""Tests of sim.config."""
