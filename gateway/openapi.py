"""The OpenAPI 3.0.3 description of API v1, served at ``GET /api/v1/openapi.json``.

The document is a plain dict built by :func:`openapi_document`. It describes every
endpoint under ``/api/v1``: parameters with their bounds, the binary request body, the
JSON response bodies and every status code an endpoint answers. Limits that come from
the gateway's configuration (the longest long-poll ``wait``, the largest request body)
are taken from the running gateway's :class:`~gateway.config.GatewayConfig`.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

from flask_restful import Resource

from gateway.config import GatewayConfig
from gateway.context import gateway
from gateway.resources import IDEMPOTENCY_HEADER, MAX_TIMEOUT, PAYLOAD_TYPE
from gateway.store import STATUSES
from wire import limits, outcome_frames
from wire.http import API_PREFIX, DILL_HEADER, JOB_HEADER, PYTHON_HEADER

OPENAPI_VERSION = "3.0.3"
BASE_PATH = API_PREFIX
JSON = "application/json"
TEXT = "text/plain"
JOB_ID_PATTERN = "^[0-9a-f]{32}$"
MAX_NAME = 200
MAX_RETRIES = 100
MAX_LIMIT = 1000
DEFAULT_LIMIT = 50
MAX_IDEMPOTENCY_KEY = 200

Schema = dict[str, Any]

# Only its limits are read: ``max_wait`` and ``max_body`` as a gateway has them by default.
_DEFAULT_CONFIG = GatewayConfig(save_dir=Path("save"), token="")


def _ref(kind: str, name: str) -> Schema:
    """A reference to ``#/components/{kind}/{name}``."""
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> Schema:
    """A reference to a reusable schema."""
    return _ref("schemas", name)


def _response(name: str) -> Schema:
    """A reference to a reusable response."""
    return _ref("responses", name)


def _param(name: str) -> Schema:
    """A reference to a reusable parameter."""
    return _ref("parameters", name)


def _batch_answer(description: str) -> dict[str, Any]:
    """A ``POST /batches`` answer: its jobs as JSON, or with ``wait`` a stream of frames."""
    return {
        "description": f"{description} JSON without `wait`; with it, a stream of outcome "
        "frames whose first frame lists the jobs.",
        "content": {
            JSON: {"schema": _schema("JobBatch")},
            outcome_frames.MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        },
    }


def _json(schema: Schema, description: str, headers: dict[str, Any] | None = None) -> Schema:
    """A response whose body is JSON matching ``schema``."""
    response: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _nullable(schema: Schema, description: str) -> Schema:
    """``schema`` that may also be null (OpenAPI 3.0's ``nullable``)."""
    return {**schema, "nullable": True, "description": description}


def _package_version() -> str:
    """The installed computethis version: the document's ``info.version``."""
    try:
        return metadata.version("computethis")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


def _schemas() -> dict[str, Schema]:
    """Reusable schemas: the job, its error, pages, workers, health and the error body."""
    job_id = {
        "type": "string",
        "pattern": JOB_ID_PATTERN,
        "description": "The job's id: 32 lowercase hexadecimal characters.",
        "example": "3f2b8c1d9e7a4b6c8d0e1f2a3b4c5d6e",
    }
    timestamp = {"type": "string", "format": "date-time", "example": "2024-09-01T12:00:00.123Z"}
    return {
        "JobId": job_id,
        "Error": {
            "type": "object",
            "description": "Every error answer: a stable machine-readable code and a message.",
            "required": ["error", "message"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "string",
                    "description": "Machine-readable code, e.g. `invalid_parameter`, "
                    "`unauthorized`, `job_not_found`, `result_expired`.",
                    "example": "job_not_found",
                },
                "message": {
                    "type": "string",
                    "description": "What went wrong and what to do about it.",
                },
            },
        },
        "JobError": {
            "type": "object",
            "description": "Why a job failed.",
            "required": ["type", "message", "traceback"],
            "additionalProperties": True,
            "properties": {
                "type": {
                    "type": "string",
                    "description": "The exception's class name, or a system error type "
                    "(`DeserializationError`, `SerializationError`, `WorkerDied`, "
                    "`TimeoutError`, `PayloadLost`, ...).",
                },
                "qualified_type": {
                    "type": "string",
                    "description": "The exception's module-qualified class name.",
                },
                "message": {"type": "string"},
                "traceback": {
                    "type": "string",
                    "description": "The remote traceback; empty for errors of the system.",
                },
            },
        },
        "Job": {
            "type": "object",
            "description": "A job: one call of a function on one worker.",
            "required": [
                "id",
                "name",
                "status",
                "created_at",
                "started_at",
                "finished_at",
                "duration",
                "worker",
                "attempts",
                "timeout",
                "retries",
                "python_version",
                "dill_version",
                "payload_size",
                "result_size",
            ],
            "properties": {
                "id": _schema("JobId"),
                "name": _nullable({"type": "string", "maxLength": MAX_NAME}, "Display name."),
                "status": _schema("JobStatus"),
                "created_at": {**timestamp, "description": "When the job was stored (UTC)."},
                "started_at": _nullable(timestamp, "When a worker started it (UTC)."),
                "finished_at": _nullable(timestamp, "When it finished, failed or was cancelled."),
                "duration": _nullable(
                    {"type": "number"},
                    "Seconds between start and finish (clocks of two hosts may disagree).",
                ),
                "worker": _nullable({"type": "string"}, "Address of the worker that ran it."),
                "attempts": {"type": "integer", "minimum": 0},
                "timeout": _nullable(
                    {"type": "number", "minimum": 0.001, "maximum": MAX_TIMEOUT},
                    "Seconds the job may run.",
                ),
                "retries": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES},
                "python_version": _nullable({"type": "string"}, "The client's Python version."),
                "dill_version": _nullable({"type": "string"}, "The client's dill version."),
                "payload_size": {"type": "integer", "minimum": 0},
                "result_size": _nullable(
                    {"type": "integer", "minimum": 0}, "Size of the stored result, in bytes."
                ),
                "error": _schema("JobError"),
            },
        },
        "JobStatus": {
            "type": "string",
            "enum": list(STATUSES),
            "description": "`queued` and `running` are active; `finished`, `failed` and "
            "`cancelled` are done; `expired` is done and its result was removed.",
        },
        "JobOutcome": {
            "description": "A job with, when it failed and its exception could be "
            "pickled, that exception.",
            "allOf": [
                _schema("Job"),
                {
                    "type": "object",
                    "properties": {
                        "exception": {
                            "type": "string",
                            "format": "byte",
                            "description": "Base64 of the dill bytes of the exception, "
                            "when it could be pickled.",
                        }
                    },
                },
            ],
        },
        "CancelledJob": {
            "description": "`DELETE` of an active job: it was cancelled, not deleted.",
            "allOf": [
                _schema("Job"),
                {
                    "type": "object",
                    "required": ["deleted"],
                    "properties": {"deleted": {"type": "boolean", "enum": [False]}},
                },
            ],
        },
        "DeletedJob": {
            "type": "object",
            "description": "`DELETE` of a done job: the job, its payload and result are gone.",
            "required": ["id", "deleted"],
            "additionalProperties": False,
            "properties": {
                "id": _schema("JobId"),
                "deleted": {"type": "boolean", "enum": [True]},
            },
        },
        "JobPage": {
            "type": "object",
            "required": ["jobs", "next_cursor"],
            "additionalProperties": False,
            "properties": {
                "jobs": {"type": "array", "items": _schema("Job"), "maxItems": MAX_LIMIT},
                "next_cursor": {
                    "type": "string",
                    "pattern": "^[0-9]{1,18}$",
                    "nullable": True,
                    "description": "Pass it back as `cursor` for the next page; null on "
                    "the last page.",
                },
            },
        },
        "JobIds": {
            "type": "object",
            "required": ["jobs"],
            "properties": {
                "jobs": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "maxItems": limits.MAX_JOBS,
                    "description": "Ids of the caller's jobs; an id listed twice is answered once.",
                },
            },
        },
        "JobBatch": {
            "type": "object",
            "required": ["jobs"],
            "additionalProperties": False,
            "properties": {
                "jobs": {
                    "type": "array",
                    "items": _schema("Job"),
                    "minItems": 1,
                    "maxItems": limits.MAX_CALLS,
                    "description": "One job per call, in the body's order.",
                },
            },
        },
        "Worker": {
            "type": "object",
            "required": [
                "address",
                "name",
                "threads",
                "memory_limit",
                "memory",
                "current_job",
                "jobs_completed",
            ],
            "additionalProperties": False,
            "properties": {
                "address": {"type": "string", "example": "tcp://127.0.0.1:40123"},
                "name": {"type": "string"},
                "threads": {"type": "integer", "minimum": 0, "nullable": True},
                "memory_limit": {"type": "integer", "minimum": 0, "nullable": True},
                "memory": {"type": "integer", "minimum": 0, "nullable": True},
                "current_job": {**job_id, "nullable": True},
                "jobs_completed": {"type": "integer", "minimum": 0},
            },
        },
        "WorkerList": {
            "type": "object",
            "required": ["count"],
            "additionalProperties": False,
            "properties": {
                "count": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "How many workers are connected.",
                },
                "workers": {
                    "type": "array",
                    "items": _schema("Worker"),
                    "description": "Each worker's details: only for the admin token.",
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "scheduler", "workers"],
            "additionalProperties": False,
            "properties": {
                "status": {"type": "string", "enum": ["ok", "degraded"]},
                "scheduler": {
                    "type": "string",
                    "nullable": True,
                    "description": "The scheduler's address; null while not connected.",
                },
                "workers": {"type": "integer", "minimum": 0},
            },
        },
        "OpenApiDocument": {
            "type": "object",
            "required": ["openapi", "info", "paths"],
            "description": "This document.",
        },
    }


def _parameters(config: GatewayConfig) -> dict[str, Schema]:
    """Reusable parameters: the job id in the path, query parameters and request headers."""
    return {
        "JobIdPath": {
            "name": "job_id",
            "in": "path",
            "required": True,
            "description": "A job id; any other value answers 404.",
            "schema": _schema("JobId"),
        },
        "Timeout": {
            "name": "timeout",
            "in": "query",
            "description": "Seconds the job may run; past it the job fails with "
            "`TimeoutError` and its worker is restarted. Default: no limit.",
            "schema": {"type": "number", "minimum": 0.001, "maximum": MAX_TIMEOUT},
        },
        "Retries": {
            "name": "retries",
            "in": "query",
            "description": "How many times to re-run the job when the function raises.",
            "schema": {"type": "integer", "minimum": 0, "maximum": MAX_RETRIES, "default": 0},
        },
        "Name": {
            "name": "name",
            "in": "query",
            "description": "A display name; characters other than letters, digits and "
            "` .:@+-_` are replaced by `_`.",
            "schema": {"type": "string", "maxLength": MAX_NAME},
        },
        "Wait": {
            "name": "wait",
            "in": "query",
            "description": "Seconds to wait for the job to be done before answering.",
            "schema": {
                "type": "number",
                "minimum": 0,
                "maximum": config.max_wait,
                "default": 0,
            },
        },
        "Limit": {
            "name": "limit",
            "in": "query",
            "description": "Jobs per page.",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT,
            },
        },
        "Cursor": {
            "name": "cursor",
            "in": "query",
            "description": "The `next_cursor` of the previous page.",
            "schema": {"type": "string", "pattern": "^[0-9]{0,18}$"},
        },
        "IdempotencyKeyQuery": {
            "name": "idempotency_key",
            "in": "query",
            "description": "Only your job submitted with this `Idempotency-Key`.",
            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
        },
        "Status": {
            "name": "status",
            "in": "query",
            "description": "Only jobs with this status.",
            "schema": _schema("JobStatus"),
        },
        "IdempotencyKey": {
            "name": IDEMPOTENCY_HEADER,
            "in": "header",
            "description": "1 to 200 printable characters. A second `POST` with a key this "
            "token already used answers 200 with the job the first one created, and "
            "creates nothing.",
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_IDEMPOTENCY_KEY,
            },
        },
        "PythonVersion": {
            "name": PYTHON_HEADER,
            "in": "header",
            "description": "The client's Python version (`3.11.7`); a major.minor the "
            "workers do not run answers 400 `python_version_mismatch`.",
            "schema": {"type": "string", "example": "3.11.7"},
        },
        "DillVersion": {
            "name": DILL_HEADER,
            "in": "header",
            "description": "The client's dill version, recorded with the job.",
            "schema": {"type": "string", "example": "0.3.9"},
        },
    }


def _responses(config: GatewayConfig) -> dict[str, Schema]:
    """Reusable error responses, all with the ``Error`` body."""
    error = _schema("Error")
    return {
        "BadRequest": _json(
            error,
            "A query parameter or header is invalid (`invalid_parameter`, `invalid_header`).",
        ),
        "Unauthorized": _json(
            error,
            "No token, or a wrong one (`unauthorized`).",
            {
                "WWW-Authenticate": {
                    "description": 'Always `Bearer realm="computethis"`.',
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        ),
        "JobNotFound": _json(
            error,
            "No job with this id for this token (`job_not_found`); another tenant's job "
            "is answered the same way.",
        ),
        "MethodNotAllowed": _json(
            error,
            "The path exists but not with this method (`method_not_allowed`). Answered "
            "by every path for the methods it does not list.",
            {
                "Allow": {
                    "description": "The methods the path accepts.",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        ),
        "PayloadTooLarge": _json(
            error,
            f"The body is larger than this gateway's limit ({config.max_body} bytes, "
            "see `--max-body`).",
        ),
        "UnsupportedMediaType": _json(
            error, f"The body was not sent as `Content-Type: {PAYLOAD_TYPE}`."
        ),
        "TooManyQueuedJobs": _json(
            error,
            "This tenant already has `--max-queued` queued or running jobs "
            "(`too_many_queued_jobs`); retry after `Retry-After` seconds.",
            {
                "Retry-After": {
                    "description": "Seconds to wait before submitting again.",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
        ),
    }


def _job_response(description: str) -> Schema:
    """A response whose body is the job's JSON."""
    return _json(_schema("Job"), description)


def _paths(config: GatewayConfig) -> dict[str, Any]:
    """Every endpoint of API v1, relative to the ``/api/v1`` server."""
    job_path_param = [_param("JobIdPath")]
    location = {
        "Location": {
            "description": "The job's URL, `/api/v1/jobs/{job_id}`.",
            "required": True,
            "schema": {"type": "string"},
        },
        JOB_HEADER: {
            "description": "The job's id.",
            "required": True,
            "schema": _schema("JobId"),
        },
    }
    public: list[dict[str, list[str]]] = []
    return {
        "/jobs": {
            "post": {
                "operationId": "submitJob",
                "tags": ["jobs"],
                "summary": "Submit a call as a job",
                "description": "Stores the dill bytes of `(func, args, kwargs)` and queues "
                "the job. Answers 201 only once the job and its payload are durably "
                "stored. The gateway never unpickles the body: it checks that it is one "
                "complete pickle of a 3-tuple by reading its opcodes (an index of its "
                "large buffers may follow the pickle: see the README). With `wait`, it "
                "then waits that long for the job: a job that finished in time is "
                "answered 200 with its result bytes, one that failed 201 with its error.",
                "parameters": [
                    _param("Timeout"),
                    _param("Retries"),
                    _param("Name"),
                    _param("Wait"),
                    _param("IdempotencyKey"),
                    _param("PythonVersion"),
                    _param("DillVersion"),
                ],
                "requestBody": {
                    "required": True,
                    "description": "`dill.dumps((func, args, kwargs))`.",
                    "content": {PAYLOAD_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": {
                    "201": _json(
                        _schema("JobOutcome"),
                        "The job was stored and queued: the job, as it is when `wait` "
                        "ended (with its `error`, and `exception`, if it failed by then).",
                        location,
                    ),
                    "200": {
                        "description": "The `Idempotency-Key` was already used: the job it "
                        "created (JSON). Or the job finished within `wait`: the dill bytes "
                        f"of its return value (`{PAYLOAD_TYPE}`).",
                        "headers": location,
                        "content": {
                            JSON: {"schema": _schema("Job")},
                            PAYLOAD_TYPE: {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    "400": _json(
                        _schema("Error"),
                        "A parameter or header is invalid (`invalid_parameter`, "
                        "`invalid_header`), the body is not a complete pickle of a 3-tuple "
                        "(`invalid_payload`), the body ended before its Content-Length "
                        "(`incomplete_body`), or the client's Python major.minor is not "
                        "the workers' (`python_version_mismatch`).",
                    ),
                    "401": _response("Unauthorized"),
                    "413": _response("PayloadTooLarge"),
                    "415": _response("UnsupportedMediaType"),
                    "429": _response("TooManyQueuedJobs"),
                },
            },
            "get": {
                "operationId": "listJobs",
                "tags": ["jobs"],
                "summary": "List your jobs, newest first",
                "description": "A tenant's token lists that tenant's jobs; the admin token "
                "lists every tenant's. With `idempotency_key`, the page holds only the "
                "caller's job submitted with that key, if there is one (how a client finds "
                "the job of a request whose answer it never read).",
                "parameters": [
                    _param("Status"),
                    _param("Limit"),
                    _param("Cursor"),
                    _param("IdempotencyKeyQuery"),
                ],
                "responses": {
                    "200": _json(_schema("JobPage"), "One page of jobs."),
                    "400": _response("BadRequest"),
                    "401": _response("Unauthorized"),
                },
            },
        },
        "/batches": {
            "post": {
                "operationId": "submitJobs",
                "tags": ["jobs"],
                "summary": "Submit several calls, one job each, in one request",
                "description": "Stores every call of the body as a job, all in one "
                "transaction, and queues them together; answers 201 only once all are "
                "durably stored. The query options apply to every job. Each call is "
                "checked as `POST /jobs` checks its body; one bad call refuses the whole "
                "batch and stores nothing. With an `Idempotency-Key` K, job i gets the key "
                "`K#i`, and a repeat of the request answers 200 with the same jobs. With "
                "`wait`, the answer is a stream of outcome frames as `POST /results` "
                "sends them: the first frame's JSON is `{jobs: [...]}` (its result length "
                "is 0), and each job's outcome follows as soon as it is done, until all "
                "are sent or `wait` has passed.",
                "parameters": [
                    _param("Wait"),
                    _param("Timeout"),
                    _param("Retries"),
                    _param("Name"),
                    _param("IdempotencyKey"),
                    _param("PythonVersion"),
                    _param("DillVersion"),
                ],
                "requestBody": {
                    "required": True,
                    "description": "Each call's `dill.dumps((func, args, kwargs))` (at most "
                    f"{limits.MAX_CALL_BYTES} bytes) after its length in bytes as an "
                    f"8-byte big-endian unsigned integer; at most {limits.MAX_CALLS} "
                    f"calls and {limits.MAX_BATCH_BYTES} bytes in all.",
                    "content": {PAYLOAD_TYPE: {"schema": {"type": "string", "format": "binary"}}},
                },
                "responses": {
                    "201": _batch_answer("The jobs were stored and queued."),
                    "200": _batch_answer(
                        "The `Idempotency-Key` was already used: the jobs it created."
                    ),
                    "400": _json(
                        _schema("Error"),
                        "A parameter or header is invalid (`invalid_parameter`, "
                        "`invalid_header`), the body is not a sequence of length-prefixed "
                        "calls or holds none or too many (`invalid_batch`), a call is not a "
                        "complete pickle of a 3-tuple (`invalid_payload`, its message "
                        "names the call), the body ended before its Content-Length "
                        "(`incomplete_body`), or the client's Python major.minor is not "
                        "the workers' (`python_version_mismatch`).",
                    ),
                    "401": _response("Unauthorized"),
                    "413": _json(
                        _schema("Error"),
                        "The body is larger than the batch limit or this gateway's "
                        "`--max-body` (`payload_too_large`), a call is over the size a "
                        "batch takes (`call_too_large`: post it alone to `/jobs`), or the "
                        "batch holds more calls than `--max-queued` lets a tenant queue at "
                        "once (`batch_too_large`: send smaller batches).",
                    ),
                    "415": _response("UnsupportedMediaType"),
                    "429": _response("TooManyQueuedJobs"),
                },
            },
        },
        "/results": {
            "post": {
                "operationId": "streamResults",
                "tags": ["jobs"],
                "summary": "Wait for several jobs, each outcome streamed as its job is done",
                "description": "Answers at once with a stream that carries each listed "
                "job's outcome as soon as the job is done (finished, failed, cancelled or "
                "expired), in the order they are done, one frame per job. The stream ends "
                "when every job has been sent or `wait` has passed; jobs not done by then "
                "are left out: ask again for those. A frame is two 8-byte big-endian "
                "unsigned lengths J and R, then J bytes of the job's JSON (as `GET "
                "/jobs/{job_id}` answers it, plus `exception` for a failed job, or "
                "`refusal`: `{status, error, message}` when the result can no longer be "
                "had, as `result_expired`), then R bytes: the dill bytes of a finished "
                "job's return value (R is 0 otherwise).",
                "parameters": [_param("Wait")],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _schema("JobIds")}},
                },
                "responses": {
                    "200": {
                        "description": "The stream of outcome frames (possibly none, if "
                        "no job was done within `wait`).",
                        "content": {
                            outcome_frames.MEDIA_TYPE: {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    "400": _json(
                        _schema("Error"),
                        "`wait` is invalid (`invalid_parameter`), or the body is not a "
                        f"JSON object whose `jobs` lists 1 to {limits.MAX_JOBS} "
                        "job ids (`invalid_body`).",
                    ),
                    "401": _response("Unauthorized"),
                    "404": _response("JobNotFound"),
                    "415": _json(
                        _schema("Error"),
                        "The body was not sent as `Content-Type: application/json`.",
                    ),
                },
            },
        },
        "/jobs/{job_id}": {
            "parameters": job_path_param,
            "get": {
                "operationId": "getJob",
                "tags": ["jobs"],
                "summary": "A job's status",
                "responses": {
                    "200": _job_response("The job."),
                    "401": _response("Unauthorized"),
                    "404": _response("JobNotFound"),
                },
            },
            "delete": {
                "operationId": "deleteJob",
                "tags": ["jobs"],
                "summary": "Cancel an active job, or delete a done one",
                "description": "A queued or running job is cancelled (its worker is "
                "restarted) and answered with `deleted: false`; a finished, failed, "
                "cancelled or expired job is deleted with its payload and result.",
                "responses": {
                    "200": _json(
                        {"oneOf": [_schema("CancelledJob"), _schema("DeletedJob")]},
                        "The job was cancelled (`deleted: false`) or deleted.",
                    ),
                    "401": _response("Unauthorized"),
                    "404": _response("JobNotFound"),
                },
            },
        },
        "/jobs/{job_id}/cancel": {
            "parameters": job_path_param,
            "post": {
                "operationId": "cancelJob",
                "tags": ["jobs"],
                "summary": "Cancel a queued or running job",
                "description": "A running job's worker is restarted. A job already done "
                "is left as it is.",
                "responses": {
                    "200": _job_response("The job, as it is after the cancel."),
                    "401": _response("Unauthorized"),
                    "404": _response("JobNotFound"),
                },
            },
        },
        "/jobs/{job_id}/result": {
            "parameters": job_path_param,
            "get": {
                "operationId": "getJobResult",
                "tags": ["jobs"],
                "summary": "Long-poll for a job's outcome",
                "parameters": [_param("Wait")],
                "responses": {
                    "200": {
                        "description": "Done: the dill bytes of the return value "
                        f"(`{PAYLOAD_TYPE}`; `pickle.loads` ignores the index of large "
                        "buffers that may follow) when the job finished; the job as JSON, with "
                        "`error` and maybe `exception`, when it failed or was cancelled.",
                        "content": {
                            PAYLOAD_TYPE: {"schema": {"type": "string", "format": "binary"}},
                            JSON: {"schema": _schema("JobOutcome")},
                        },
                    },
                    "202": _job_response("Not done when the wait ended: the job."),
                    "400": _response("BadRequest"),
                    "401": _response("Unauthorized"),
                    "404": _response("JobNotFound"),
                    "410": _json(
                        _schema("Error"),
                        "The job finished longer than `--result-ttl` ago and its result "
                        "was removed (`result_expired`).",
                    ),
                },
            },
        },
        "/jobs/{job_id}/logs": {
            "parameters": job_path_param,
            "get": {
                "operationId": "getJobLogs",
                "tags": ["jobs"],
                "summary": "What the job printed",
                "description": "The job's captured stdout and stderr (the last 1 MiB), "
                "empty while it runs.",
                "responses": {
                    "200": {
                        "description": "The job's captured output.",
                        "content": {TEXT: {"schema": {"type": "string"}}},
                    },
                    "401": _response("Unauthorized"),
                    "404": _response("JobNotFound"),
                },
            },
        },
        "/workers": {
            "get": {
                "operationId": "listWorkers",
                "tags": ["cluster"],
                "summary": "The workers connected to the scheduler",
                "responses": {
                    "200": _json(_schema("WorkerList"), "Every connected worker."),
                    "401": _response("Unauthorized"),
                },
            },
        },
        "/health": {
            "get": {
                "operationId": "getHealth",
                "tags": ["cluster"],
                "summary": "Is the gateway connected to a scheduler with workers?",
                "security": public,
                "responses": {
                    "200": _json(_schema("Health"), "`status: ok`: ready to run jobs."),
                    "503": _json(
                        _schema("Health"),
                        "`status: degraded`: the scheduler is unreachable or has no "
                        "workers; jobs are still accepted and stored.",
                    ),
                },
            },
        },
        "/openapi.json": {
            "get": {
                "operationId": "getOpenApi",
                "tags": ["meta"],
                "summary": "This OpenAPI document",
                "security": public,
                "responses": {"200": _json(_schema("OpenApiDocument"), "This document.")},
            },
        },
    }


def openapi_document(config: GatewayConfig | None = None) -> dict[str, Any]:
    """The OpenAPI description of API v1 (bounds from ``config``, else the defaults)."""
    if config is None:
        config = _DEFAULT_CONFIG
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "computethis",
            "version": _package_version(),
            "description": "Run Python functions on a Dask cluster over HTTP. Every endpoint "
            "except `health` and `openapi.json` needs `Authorization: Bearer TOKEN`. Errors "
            'are JSON `{"error": CODE, "message": TEXT}` with a 4xx status for the '
            "caller's mistakes: 400 bad input, 401 no or wrong token, 404 unknown job or "
            "path, 405 a method the path does not list (with `Allow`), 410 result expired, "
            "413 body too large, 415 wrong content type, 429 too many queued jobs; on any "
            "path, 414 a URL and 431 headers over 64 KiB. A 500 is a bug.",
            "license": {"name": "Apache-2.0"},
        },
        "servers": [{"url": BASE_PATH}],
        "tags": [
            {"name": "jobs", "description": "Submit, watch, fetch and remove jobs."},
            {"name": "cluster", "description": "The Dask cluster behind the gateway."},
            {"name": "meta", "description": "This description."},
        ],
        "security": [{"bearerAuth": []}],
        "paths": _paths(config),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The token `computethis up` printed, or `COMPUTETHIS_TOKEN`.",
                }
            },
            "schemas": _schemas(),
            "parameters": _parameters(config),
            "responses": _responses(config),
        },
    }


class OpenApiDocument(Resource):
    """``GET /api/v1/openapi.json``: this API's OpenAPI document (no token needed)."""

    def get(self) -> dict[str, Any]:
        """The document, with this gateway's limits."""
        return openapi_document(gateway().config)
