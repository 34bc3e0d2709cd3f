"""atoms."""
