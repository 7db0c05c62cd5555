"""Console scripts, and the in-process Nova stack the demo shares with tests/nova."""
