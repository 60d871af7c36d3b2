"""Model artifacts: ``/artifacts/<sha256>``, uploaded once per tenant and loaded by
deployments on the workers. The gateway checks the bytes' SHA-256 and their size; it
never loads them (:mod:`gateway.store.artifacts`)."""

from __future__ import annotations

from typing import Any

from flask_restful import Resource

from gateway.api.auth import tenant
from gateway.api.bodies import receive_content
from gateway.api.errors import ApiError
from gateway.services import services
from gateway.store.bundles import DIGEST
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
        size = receive_content(
            shared.store.artifacts,
            tenant(),
            checked_digest(digest),
            PAYLOAD_MEDIA_TYPE,
            "the artifact's bytes",
            _too_large,
        )
        shared.metrics.artifact_bytes.inc(size)
        return {"artifact": digest, "size": size}, 201, _limit_header()

    def delete(self, digest: str) -> dict[str, Any]:
        """Delete the caller's artifact (replicas already built keep their model)."""
        if not services().store.artifacts.remove(tenant(), checked_digest(digest)):
            raise artifact_not_found(digest)
        return {"artifact": digest, "deleted": True}
