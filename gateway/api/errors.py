"""JSON errors: every error response is ``{"error": CODE, "message": TEXT}``."""

from __future__ import annotations

import logging
import re

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error the caller can act on, answered with ``status`` and a JSON body."""

    def __init__(
        self, status: int, error: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}


def not_found(job_id: str) -> ApiError:
    """404 for a job that does not exist, or is not the caller's."""
    return ApiError(404, "job_not_found", f"no job with id {job_id!r}")


def error_response(exc: BaseException) -> Response:
    """Turn any exception into a JSON error response (500 only for bugs)."""
    if isinstance(exc, ApiError):
        status, error, message, headers = exc.status, exc.error, exc.message, exc.headers
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        error = re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")
        message, headers = exc.description or exc.name, {}
        if status == 413:
            message = "the request body is too large for this gateway (see --max-body)"
        if status == 405:
            allowed = exc.valid_methods if hasattr(exc, "valid_methods") else None
            if allowed:
                headers = {"Allow": ", ".join(allowed)}
    else:
        log.exception("unhandled error", exc_info=exc)
        status, error, headers = 500, "internal_error", {}
        message = "the gateway hit an unexpected error; it has been logged"
    response = jsonify({"error": error, "message": message})
    response.status_code = status
    response.headers.update(headers)
    return response


def install_error_handlers(app: Flask) -> None:
    """Answer every error of ``app`` (routes outside the API too) as :func:`error_response`."""
    app.register_error_handler(ApiError, error_response)
    app.register_error_handler(HTTPException, error_response)
    app.register_error_handler(Exception, error_response)
