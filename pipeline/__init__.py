"""dubprep: dubbing preparation for film and TV post-production."""

__version__ = "0.1.0"
