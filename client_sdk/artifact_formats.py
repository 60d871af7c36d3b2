"""Model artifacts in each framework's own format, never pickled.

========== ============================ ==========================================
format     written with                 read back with
========== ============================ ==========================================
xgboost    ``Booster.save_raw("ubj")``  ``Booster().load_model(bytearray)``
torch      ``torch.save(state_dict)``   ``torch.load(..., weights_only=True)`` into
                                        the module's skeleton (its class by value,
                                        its parameters on the ``meta`` device)
skops      ``skops.io.dumps(estimator)`` ``skops.io.loads`` with only the types
                                        skops reports for that file as trusted if
                                        they come from scikit-learn, numpy or scipy
========== ============================ ==========================================

The SDK dumps (:func:`dump_artifact`), workers load (:func:`load_artifact`). The
frameworks are imported only when used.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from typing import Any

XGBOOST, TORCH, SKOPS = "xgboost", "torch", "skops"
FORMATS = (XGBOOST, TORCH, SKOPS)
# Modules whose types a skops file may hold and be loaded without being named by hand.
SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


@dataclass(frozen=True)
class Dumped:
    """An artifact ready to upload: its bytes, format, and what rebuilds it besides them
    (a PyTorch module's skeleton, pickled with the class by dill; None otherwise)."""

    data: bytes
    format: str
    skeleton: Any = None


def dump_artifact(model: Any, format: str) -> Dumped:
    """``model`` in ``format``'s own serialization (TypeError if it is not such a model)."""
    if format == XGBOOST:
        return Dumped(bytes(_booster(model).save_raw("ubj")), XGBOOST)
    if format == TORCH:
        return _dump_torch(model)
    if format == SKOPS:
        import skops.io

        return Dumped(skops.io.dumps(model), SKOPS)
    raise ValueError(f"unknown artifact format {format!r}: use one of {FORMATS}")


def load_artifact(data: bytes | memoryview, format: str, skeleton: Any = None) -> Any:
    """The model from its bytes (see the module's table); nothing in it is unpickled."""
    if format == XGBOOST:
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(data))
        return booster
    if format == TORCH:
        import torch

        state = torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location="cpu")
        module = skeleton.to_empty(device="cpu")
        module.load_state_dict(state)
        module.eval()
        return module
    if format == SKOPS:
        import skops.io

        raw = bytes(data)
        untrusted = skops.io.get_untrusted_types(data=raw)
        refused = [name for name in untrusted if not name.startswith(SKOPS_TRUSTED_PREFIXES)]
        if refused:
            raise TypeError(
                f"the skops artifact holds types outside scikit-learn, numpy and scipy "
                f"({', '.join(refused)}): they are not loaded"
            )
        return skops.io.loads(raw, trusted=untrusted)
    raise ValueError(f"unknown artifact format {format!r}")


def _booster(model: Any) -> Any:
    import xgboost

    if isinstance(model, xgboost.Booster):
        return model
    if hasattr(model, "get_booster"):  # the scikit-learn wrappers (XGBClassifier...)
        return model.get_booster()
    raise TypeError(
        f"XgboostModel needs an xgboost.Booster (or an XGBModel), not {type(model).__name__}"
    )


def _dump_torch(module: Any) -> Dumped:
    import torch

    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"PytorchModel needs a torch.nn.Module, not {type(module).__name__}")
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    skeleton = copy.deepcopy(module).to("meta")  # structure and class, no weights
    return Dumped(buffer.getvalue(), TORCH, skeleton)
