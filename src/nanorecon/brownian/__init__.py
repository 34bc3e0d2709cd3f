"""brownian."""
