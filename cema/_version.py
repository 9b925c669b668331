"""Cema's version, alone so that ``cema --version`` imports nothing else."""

__version__ = "0.1.0"
