"""The OpenAPI 3.0.3 document of API v1, served at ``GET /api/v1/openapi.json``.

The document is declared in ``openapi.yaml`` beside this module (package data), read
once. The bounds it names as ``${name}`` are filled in from :func:`named_values`:
the limits of :mod:`wire.limits`, the running gateway's
:class:`~gateway.config.GatewayConfig` (the longest ``wait``, the largest body) and
the constants of the API code that enforces them, so each is stated once.
"""

from __future__ import annotations

import functools
import re
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import yaml
from flask_restful import Resource

from gateway.api import deployments, folders, jobs, params, submit
from gateway.config import GatewayConfig
from gateway.services import services
from gateway.store import STATUSES
from wire import limits

DECLARATION = "openapi.yaml"
_NAME = re.compile(r"\$\{(\w+)\}")

# Only its limits are read: ``max_wait`` and ``max_body`` as a gateway has them by default.
_DEFAULT_CONFIG = GatewayConfig(save_dir=Path("save"), token="")


def named_values(config: GatewayConfig | None = None) -> dict[str, Any]:
    """What each ``${name}`` of the declaration stands for (``config``: the defaults
    when None)."""
    if config is None:
        config = _DEFAULT_CONFIG
    return {
        "version": _package_version(),
        "max_wait": config.max_wait,
        "max_body": config.max_body,
        "max_calls": limits.MAX_CALLS,
        "max_call_bytes": limits.MAX_CALL_BYTES,
        "max_batch_bytes": limits.MAX_BATCH_BYTES,
        "max_jobs": limits.MAX_JOBS,
        "min_timeout": submit.MIN_TIMEOUT,
        "max_timeout": submit.MAX_TIMEOUT,
        "max_retries": submit.MAX_RETRIES,
        "max_ranks": submit.MAX_RANKS,
        "max_name": params.MAX_NAME,
        "max_key": params.MAX_KEY,
        "default_limit": jobs.DEFAULT_LIMIT,
        "max_limit": jobs.MAX_LIMIT,
        "max_cursor_digits": jobs.MAX_CURSOR_DIGITS,
        "job_statuses": list(STATUSES),
        "max_bundle": config.max_bundle,
        "max_run_body": folders.MAX_RUN_BODY,
        "max_replicas": deployments.MAX_REPLICAS,
        "max_artifacts": deployments.MAX_ARTIFACTS,
        "max_methods": deployments.MAX_METHODS,
    }


def declaration() -> dict[str, Any]:
    """The document as declared, its ``${name}``s not filled in (do not modify it)."""
    return _read_declaration()


def openapi_document(config: GatewayConfig | None = None) -> dict[str, Any]:
    """The OpenAPI description of API v1 (bounds from ``config``, else the defaults)."""
    return _filled(_read_declaration(), named_values(config))


class OpenApiDocument(Resource):
    """``/openapi.json`` (no token needed)."""

    def get(self) -> dict[str, Any]:
        """The document, with this gateway's limits."""
        return openapi_document(services().config)


@functools.cache
def _read_declaration() -> dict[str, Any]:
    text = resources.files(__package__).joinpath(DECLARATION).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _filled(node: Any, values: dict[str, Any]) -> Any:
    """A copy of ``node`` with each ``${name}`` replaced: a string that is only one
    becomes the value itself, one inside text becomes its ``str``."""
    if isinstance(node, dict):
        return {key: _filled(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_filled(item, values) for item in node]
    if isinstance(node, str):
        whole = _NAME.fullmatch(node)
        if whole:
            return _filled(values[whole[1]], {})
        return _NAME.sub(lambda name: str(values[name[1]]), node)
    return node


def _package_version() -> str:
    """The installed computethis version: the document's ``info.version``."""
    try:
        return metadata.version("computethis")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"
