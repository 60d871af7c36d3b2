"""Model artifacts: ``/artifacts/<sha256>``, uploaded once per tenant and loaded by
deployments on the workers. The gateway checks the bytes' SHA-256 and their size; it
never loads them (:mod:`gateway.store.artifacts`)."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_restful import Resource

from gateway.api.auth import tenant
from gateway.api.bodies import arriving, body_stream
from gateway.api.errors import ApiError
from gateway.services import services
from gateway.store import IncompleteBody, PayloadTooLarge
from gateway.store.bundles import DIGEST, BundleMismatch
from wire.http import ARTIFACTS_PATH, MAX_BUNDLE_HEADER, PAYLOAD_MEDIA_TYPE


def checked_digest(digest: str) -> str:
    """``digest`` if it is a SHA-256 in lower-case hex, else 400."""
    if not isinstance(digest, str) or not DIGEST.match(digest):
        raise ApiError(
            400,
            "invalid_artifact_digest",
            f"{str(digest)[:80]!r} is not an artifact digest: use the SHA-256 of its bytes, "
            "in lower-case hex (64 characters)",
        )
    return digest


def _limit_header() -> dict[str, str]:
    return {MAX_BUNDLE_HEADER: str(services().config.max_bundle)}


def artifact_not_found(digest: str) -> ApiError:
    """404 for an artifact the caller has not uploaded."""
    return ApiError(
        404,
        "artifact_not_found",
        f"you have no artifact {digest}: upload it first with PUT {ARTIFACTS_PATH}/{digest}",
        _limit_header(),
    )


def _too_large(limit: int, size: int | None) -> ApiError:
    what = f"is {size} bytes" if size is not None else "is larger than that"
    return ApiError(
        413,
        "artifact_too_large",
        f"the gateway takes artifacts of up to {limit} bytes (--max-bundle) and this one "
        f"{what}: ask the operator to raise --max-bundle",
        _limit_header(),
    )


class ArtifactItem(Resource):
    """``/artifacts/<sha256>``: one of the caller's uploaded artifacts."""

    def get(self, digest: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Whether the caller has this artifact: 200 with its size, or 404; both carry
        the gateway's size limit (checked before uploading)."""
        artifacts = services().store.artifacts
        if not artifacts.exists(tenant(), checked_digest(digest)):
            raise artifact_not_found(digest)
        size = artifacts.path(tenant(), digest).stat().st_size
        return {"artifact": digest, "size": size}, 200, _limit_header()

    def put(self, digest: str) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Upload an artifact: its bytes, whose SHA-256 must be ``digest`` (400 if not:
        a tampered or truncated upload is refused). 201 once it is durable."""
        shared = services()
        checked_digest(digest)
        if request.mimetype != PAYLOAD_MEDIA_TYPE:
            raise ApiError(
                415,
                "unsupported_media_type",
                f"send the artifact's bytes with Content-Type: {PAYLOAD_MEDIA_TYPE}",
            )
        limit = shared.config.max_bundle
        length = request.content_length
        if length is not None and length > limit:
            raise _too_large(limit, length)
        try:
            with arriving():
                size = shared.store.artifacts.receive(
                    tenant(), digest, body_stream(length), length, limit
                )
        except PayloadTooLarge:
            raise _too_large(limit, None) from None
        except IncompleteBody as exc:
            raise ApiError(400, "incomplete_body", f"{exc}; send the whole artifact") from None
        except BundleMismatch as exc:
            raise ApiError(400, "artifact_digest_mismatch", str(exc)) from None
        shared.metrics.artifact_bytes.inc(size)
        return {"artifact": digest, "size": size}, 201, _limit_header()

    def delete(self, digest: str) -> dict[str, Any]:
        """Delete the caller's artifact (replicas already built keep their model)."""
        if not services().store.artifacts.remove(tenant(), checked_digest(digest)):
            raise artifact_not_found(digest)
        return {"artifact": digest, "deleted": True}
