"""What a person reads: run folders (CSV, JSON), figures, Chrome traces and terminal text."""
