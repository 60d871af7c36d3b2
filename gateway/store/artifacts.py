"""Model artifacts: a framework's own serialization of a model (XGBoost UBJSON, a PyTorch
``state_dict``, a skops file), named by its SHA-256 and kept once per tenant.

Like bundles (:mod:`gateway.store.bundles`), each tenant has a directory of its own,
so one tenant can neither use nor learn of another's artifacts, and one unused for the
retention time is deleted, unless an open deployment loads it (its replicas may be
built again). The gateway checks the bytes' SHA-256 and nothing else: it never loads
an artifact.
"""

from __future__ import annotations

from pathlib import Path

from gateway.store.bundles import Bundles


class Artifacts(Bundles):
    """Artifact files under ``save_dir/artifacts/<tenant's directory>/<sha256>.bin``."""

    DIRECTORY, SUFFIX, WHAT = "artifacts", ".bin", "artifact"

    def _check(self, path: Path) -> None:
        """Nothing beyond the SHA-256: the gateway never loads an artifact."""
