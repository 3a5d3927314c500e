"""The scenario file: its schema (pydantic, no torch), loading with one-line errors, SI setup records and sweep
overrides."""
