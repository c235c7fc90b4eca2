"""training: validated digits data → reproducible CNN → model registry with cards and aliases."""
