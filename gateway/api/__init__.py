"""REST API v1: a Flask blueprint under ``/api/v1``, its resources split by concern.

- :mod:`~gateway.api.routes`: every route, and the blueprint the app registers.
- :mod:`~gateway.api.jobs`: submit a call, list jobs, read, cancel, delete one, its logs.
- :mod:`~gateway.api.batches`: submit several calls at once.
- :mod:`~gateway.api.results`: wait for one job's outcome, or stream several.
- :mod:`~gateway.api.answers`: what can be answered about a job now, and its two renderings.
- :mod:`~gateway.api.cluster`: the workers, and the gateway's health.
- :mod:`~gateway.api.openapi`: the OpenAPI document (declared in ``openapi.yaml``).
- :mod:`~gateway.api.auth`, :mod:`~gateway.api.ownership`: who calls, and whose job it is.
- :mod:`~gateway.api.bodies`, :mod:`~gateway.api.params`, :mod:`~gateway.api.submit`:
  reading bodies, query parameters and submission options within their limits.
- :mod:`~gateway.api.errors`: every error as ``{"error": CODE, "message": TEXT}``.
"""
