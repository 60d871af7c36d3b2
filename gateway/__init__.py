"""The computethis gateway: Flask app, REST resources, job store and Dask submission."""
