"""ChiOps' one command line, `chiops`: every CLI module of the project under one parser (see chiops.cli)."""

__version__ = "0.1.0"
