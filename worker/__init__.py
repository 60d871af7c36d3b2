"""Dask worker start-up and the code that runs one job on a worker."""
