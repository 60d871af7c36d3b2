"""Paths, header names and media types of REST API v1, shared by the SDK and the gateway."""

from __future__ import annotations

API_PREFIX = "/api/v1"
JOBS_PATH = f"{API_PREFIX}/jobs"
BATCH_PATH = f"{API_PREFIX}/batches"
RESULTS_PATH = f"{API_PREFIX}/results"

# A created job's id (beside ``Location``), on 201/200 answers and on a waited result.
JOB_HEADER = "X-Computethis-Job"
# The client's Python and dill versions, checked against the workers' before queueing.
PYTHON_HEADER = "X-Computethis-Python"
DILL_HEADER = "X-Computethis-Dill"

# A call payload or a result: dill bytes, never unpickled by the gateway.
PAYLOAD_MEDIA_TYPE = "application/octet-stream"
