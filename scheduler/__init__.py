"""Dask scheduler start-up with computethis's configuration."""
