"""tomography."""
