"""Arguments that cannot be pickled as they are, sent as their data and rebuilt on the
worker: an ``xgboost.DMatrix`` (which refuses pickling) crosses as its data, label,
weights and feature names and is built again there.

:func:`to_wire` replaces such values in a call's arguments (at the top level and inside
lists, tuples and dicts); the worker's :func:`from_wire` turns them back.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class DMatrixData:
    """What rebuilds an ``xgboost.DMatrix`` on a worker."""

    data: Any  # a scipy CSR matrix (absent entries are missing values)
    label: Any = None
    weight: Any = None
    feature_names: list[str] | None = None
    feature_types: list[str] | None = None

    @classmethod
    def of(cls, matrix: Any) -> DMatrixData:
        """The data of ``matrix`` (an ``xgboost.DMatrix``)."""
        label = matrix.get_label()
        weight = matrix.get_weight()
        return cls(
            matrix.get_data(),
            label if len(label) else None,
            weight if len(weight) else None,
            list(matrix.feature_names) if matrix.feature_names else None,
            list(matrix.feature_types) if matrix.feature_types else None,
        )

    def rebuild(self) -> Any:
        """The ``xgboost.DMatrix`` again."""
        import xgboost

        return xgboost.DMatrix(
            self.data,
            label=self.label,
            weight=self.weight,
            feature_names=self.feature_names,
            feature_types=self.feature_types,
        )


def _is_dmatrix(value: Any) -> bool:
    xgboost = sys.modules.get("xgboost")  # a DMatrix exists only if xgboost is imported
    return xgboost is not None and isinstance(value, xgboost.DMatrix)


def to_wire(value: Any) -> Any:
    """``value`` with every DMatrix in it replaced by its :class:`DMatrixData`."""
    if _is_dmatrix(value):
        return DMatrixData.of(value)
    if isinstance(value, (list, tuple)) and any(_adapted(item) for item in value):
        items = [to_wire(item) for item in value]
        return items if isinstance(value, list) else type(value)(items)
    if isinstance(value, dict) and any(_adapted(item) for item in value.values()):
        return {key: to_wire(item) for key, item in value.items()}
    return value


def from_wire(value: Any) -> Any:
    """The inverse of :func:`to_wire` (on the worker)."""
    if isinstance(value, DMatrixData):
        return value.rebuild()
    if isinstance(value, (list, tuple)) and any(
        isinstance(item, (DMatrixData, list, tuple, dict)) for item in value
    ):
        items = [from_wire(item) for item in value]
        return items if isinstance(value, list) else type(value)(items)
    if isinstance(value, dict) and any(
        isinstance(item, (DMatrixData, list, tuple, dict)) for item in value.values()
    ):
        return {key: from_wire(item) for key, item in value.items()}
    return value


def _adapted(value: Any) -> bool:
    if _is_dmatrix(value):
        return True
    if isinstance(value, (list, tuple)):
        return any(_adapted(item) for item in value)
    if isinstance(value, dict):
        return any(_adapted(item) for item in value.values())
    return False
