"""Folder jobs: upload a folder once (``/bundles/<sha256>``), run a command in it as a job
(``POST /runs``). The job is stored, listed, cancelled and expired like any other; its
outputs are read through :mod:`gateway.api.outputs`."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from flask import request
from flask_restful import Resource

from gateway.api.auth import tenant
from gateway.api.bodies import arriving, body_stream, too_large
from gateway.api.errors import ApiError
from gateway.api.submit import admit, check_enough_workers, job_headers, job_spec, spmd_ranks
from gateway.services import services
from gateway.store import FOLDER, IncompleteBody, PayloadTooLarge, StagedPayload
from gateway.store.bundles import DIGEST, BundleMismatch
from wire.bundle import BundleError
from wire.http import BUNDLE_MEDIA_TYPE, BUNDLES_PATH, MAX_BUNDLE_HEADER

MAX_RUN_BODY = 64 * 1024  # bytes of a run's JSON (command, outputs, env)
MAX_ARGUMENTS = 4096  # items of a command list
MAX_PATTERNS = 256  # output patterns
MAX_ENV = 1024  # environment variables
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
DEFAULT_COMMAND = ["python", "main.py"]


def _digest(digest: str) -> str:
    if not DIGEST.match(digest):
        raise ApiError(
            400,
            "invalid_bundle_digest",
            f"{digest[:80]!r} is not a bundle digest: use the SHA-256 of the tar, in "
            "lower-case hex (64 characters)",
        )
    return digest


def _limit_header() -> dict[str, str]:
    return {MAX_BUNDLE_HEADER: str(services().config.max_bundle)}


def bundle_not_found(digest: str) -> ApiError:
    """404 for a bundle the caller has not uploaded (or that expired)."""
    return ApiError(
        404,
        "bundle_not_found",
        f"you have no bundle {digest}: upload it first with PUT {BUNDLES_PATH}/{digest}",
        _limit_header(),
    )


class BundleItem(Resource):
    """``/bundles/<sha256>``: one of the caller's uploaded folders."""

    def get(self, digest: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Whether the caller has this bundle (``HEAD`` before uploading): 200 with its
        size, or 404; both carry the gateway's bundle limit."""
        bundles = services().store.bundles
        if not bundles.exists(tenant(), _digest(digest)):
            raise bundle_not_found(digest)
        size = bundles.path(tenant(), digest).stat().st_size
        return {"bundle": digest, "size": size}, 200, _limit_header()

    def put(self, digest: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Upload a bundle: the tar's bytes, whose SHA-256 must be ``digest``. It is
        checked entry by entry before it is kept; 201 once it is durable."""
        shared = services()
        _digest(digest)
        if request.mimetype != BUNDLE_MEDIA_TYPE:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"send the folder's tar (client_sdk packs it) with Content-Type: "
                f"{BUNDLE_MEDIA_TYPE}",
            )
        limit = shared.config.max_bundle
        length = request.content_length
        if length is not None and length > limit:
            raise _bundle_too_large(limit, length)
        try:
            with arriving():
                size = shared.store.bundles.receive(
                    tenant(), digest, body_stream(length), length, limit
                )
        except PayloadTooLarge:
            raise _bundle_too_large(limit, None) from None
        except IncompleteBody as exc:
            raise ApiError(400, "incomplete_body", f"{exc}; send the whole bundle") from None
        except BundleMismatch as exc:
            raise ApiError(400, "bundle_digest_mismatch", str(exc)) from None
        except BundleError as exc:
            raise ApiError(400, "invalid_bundle", str(exc)) from None
        shared.metrics.bundle_bytes.inc(size)
        return {"bundle": digest, "size": size}, 201, _limit_header()

    def delete(self, digest: str) -> dict[str, Any]:
        """Delete the caller's bundle (jobs already stored keep their outputs)."""
        if not services().store.bundles.remove(tenant(), _digest(digest)):
            raise bundle_not_found(digest)
        return {"bundle": digest, "deleted": True}


def _bundle_too_large(limit: int, size: int | None) -> ApiError:
    what = f"is {size} bytes" if size is not None else "is larger than that"
    return ApiError(
        413,
        "bundle_too_large",
        f"the gateway takes folders of up to {limit} bytes (--max-bundle) and this one "
        f"{what}: exclude large files (exclude=, --exclude) or raise --max-bundle",
        _limit_header(),
    )


class RunList(Resource):
    """``/runs``."""

    def post(self) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Run a command in an uploaded folder, as a job: 201 with the job once it is
        durably stored (200 with the existing one for a repeated ``Idempotency-Key``).

        The body is JSON: ``bundle`` (its SHA-256), ``command`` (a list of strings, run
        without a shell, or a string, run by ``sh -c``; default ``python main.py``),
        ``outputs`` (glob patterns of the files to keep; default: every file the command
        created or changed) and ``env`` (variables to set). With ``?ranks=N`` the command
        runs on N workers at once, an SPMD program (409 if fewer are connected).
        """
        shared = services()
        config = shared.config
        spec = job_spec()
        spec.kind = FOLDER
        spmd_ranks(spec)
        run = _run_body()
        digest = _digest(run["bundle"])
        if not shared.store.bundles.exists(spec.tenant, digest):
            raise bundle_not_found(digest)
        if spec.retries and spec.ranks is None:
            raise ApiError(
                400,
                "invalid_parameter",
                "retries apply to SPMD programs (with ranks) only: a folder job's command "
                "runs once; leave retries out, or run it again",
            )
        existing = admit(spec)
        if existing is not None:
            return existing.to_json(), 200, job_headers(existing)
        check_enough_workers(spec, len(shared.dispatcher.cluster.workers))
        payload = json.dumps({**run, "max_outputs": config.max_outputs}).encode()
        staged = StagedPayload(uuid.uuid4().hex, None, len(payload), payload)
        job, created = shared.store.create(spec, staged)
        headers = job_headers(job)
        if not created:
            return job.to_json(), 200, headers
        shared.metrics.submitted.inc()
        shared.dispatcher.submit(job, payload)
        return job.to_json(), 201, headers


def _run_body() -> dict[str, Any]:
    """The run's JSON body, checked: 4xx naming what is wrong."""
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            'send {"bundle": SHA256, "command": [...]} with Content-Type: application/json',
        )
    length = request.content_length
    if length is not None and length > MAX_RUN_BODY:
        raise too_large(MAX_RUN_BODY)
    with arriving():
        body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("bundle"), str):
        raise ApiError(
            400,
            "invalid_body",
            'send a JSON object with "bundle" (the SHA-256 of an uploaded folder), and '
            'optionally "command", "outputs" and "env"',
        )
    unknown = sorted(set(body) - {"bundle", "command", "outputs", "env"})
    if unknown:
        raise ApiError(400, "invalid_body", f"unknown fields {unknown}: drop them")
    return {
        "bundle": body["bundle"],
        "command": _command(body.get("command")),
        "outputs": _patterns(body.get("outputs")),
        "env": _env(body.get("env")),
    }


def _command(command: Any) -> list[str] | str:
    if command is None:
        return DEFAULT_COMMAND
    if isinstance(command, str) and command.strip() and "\0" not in command:
        return command
    if (
        isinstance(command, list)
        and 1 <= len(command) <= MAX_ARGUMENTS
        and all(isinstance(item, str) and "\0" not in item for item in command)
        and command[0]
    ):
        return command
    raise ApiError(
        400,
        "invalid_command",
        f"command must be a non-empty list of strings (run without a shell, at most "
        f"{MAX_ARGUMENTS}) or a non-empty string (run by sh -c), without NUL characters",
    )


def _patterns(patterns: Any) -> list[str]:
    if patterns is None:
        return []
    if not isinstance(patterns, list) or len(patterns) > MAX_PATTERNS:
        raise ApiError(
            400, "invalid_outputs", f"outputs must be a list of at most {MAX_PATTERNS} patterns"
        )
    for pattern in patterns:
        if (
            not isinstance(pattern, str)
            or not pattern
            or pattern.startswith("/")
            or ".." in pattern.split("/")
        ):
            raise ApiError(
                400,
                "invalid_outputs",
                f"output pattern {pattern!r} must be a glob relative to the folder "
                "(like 'out/**' or '*.csv'), without '..'",
            )
    return patterns


def _env(env: Any) -> dict[str, str]:
    if env is None:
        return {}
    if (
        isinstance(env, dict)
        and len(env) <= MAX_ENV
        and all(ENV_NAME.match(name) for name in env)
        and all(isinstance(value, str) and "\0" not in value for value in env.values())
    ):
        return env
    raise ApiError(
        400,
        "invalid_env",
        f"env must be an object of at most {MAX_ENV} variables: names of letters, digits "
        "and '_' (not starting with a digit), values strings",
    )
