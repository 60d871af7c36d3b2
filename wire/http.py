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

# Folder jobs: an uploaded folder (a bundle: an uncompressed tar, see wire.bundle) is
# named by its SHA-256; a run of a command in one is a job like any other.
BUNDLES_PATH = f"{API_PREFIX}/bundles"
RUNS_PATH = f"{API_PREFIX}/runs"
BUNDLE_MEDIA_TYPE = "application/x-tar"
# The gateway's bundle limit, on every answer about a bundle (checked before uploading).
MAX_BUNDLE_HEADER = "X-Computethis-Max-Bundle"
# A folder job's result is a zip: this member (JSON: return code, output tails, files),
# then each output file under OUTPUTS_DIR.
RUN_MEMBER = "computethis-run.json"
OUTPUTS_DIR = "outputs/"

# Deployed model classes (see docs/models.md): a deployment is created from its
# constructor payload, its calls are posted under it; artifacts (a framework's own
# serialization of a model) are uploaded once per tenant under their SHA-256.
DEPLOYMENTS_PATH = f"{API_PREFIX}/deployments"
ARTIFACTS_PATH = f"{API_PREFIX}/artifacts"
# The payload of a replica's construct job (it builds the instance and calls nothing).
CONSTRUCT_PAYLOAD = b"computethis:construct"
