"""Pure units of model classes: the workers' model LRU, the DMatrix adapter, artifact
formats (each framework's own, never pickle), and ``@artifacts``' remote methods."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from client_sdk.adapters import DMatrixData, from_wire, to_wire
from client_sdk.artifact_formats import SKOPS, XGBOOST, dump_artifact, load_artifact
from client_sdk.deployment import public_methods
from client_sdk.models import LOCAL_METHODS, NpuModel, XgboostModel, artifacts
from worker.model_cache import ModelCache

pytestmark = pytest.mark.unit


def test_the_model_cache_drops_the_least_recently_used_past_its_bound():
    cache = ModelCache(max_bytes=100)
    loads = []

    def loader(name: str, size: int):
        def load():
            loads.append(name)
            return name.upper(), size

        return load

    assert cache.get("a", loader("a", 60)) == "A"
    assert cache.get("b", loader("b", 30)) == "B"
    assert cache.get("a", loader("a", 60)) == "A"  # found: not loaded again, now newest
    assert cache.get("c", loader("c", 30)) == "C"  # 120 bytes: b (oldest) goes
    assert cache.nbytes == 90
    assert cache.get("b", loader("b", 30)) == "B"
    assert loads == ["a", "b", "c", "b"]


def test_a_dmatrix_crosses_as_its_data_and_is_rebuilt():
    features = np.arange(12, dtype=float).reshape(4, 3)
    matrix = xgb.DMatrix(features, label=[0, 1, 0, 1], feature_names=["x", "y", "z"])
    sent = to_wire(((matrix, 5), {"m": [matrix]}))
    assert isinstance(sent[0][0], DMatrixData) and isinstance(sent[1]["m"][0], DMatrixData)
    rebuilt = from_wire(sent)[0][0]
    assert isinstance(rebuilt, xgb.DMatrix)
    assert rebuilt.feature_names == ["x", "y", "z"]
    np.testing.assert_array_equal(rebuilt.get_label(), [0, 1, 0, 1])
    np.testing.assert_array_equal(rebuilt.get_data().toarray(), features)
    assert to_wire((1, "a")) == (1, "a")


def test_artifacts_round_trip_in_their_own_formats():
    features = np.random.default_rng(0).normal(size=(50, 3))
    booster = xgb.train({}, xgb.DMatrix(features, label=features[:, 0]), num_boost_round=2)
    dumped = dump_artifact(booster, XGBOOST)
    assert dumped.data[:1] == b"{"  # UBJSON, not a pickle
    loaded = load_artifact(dumped.data, XGBOOST)
    test = xgb.DMatrix(features)
    np.testing.assert_allclose(loaded.predict(test), booster.predict(test))
    with pytest.raises(TypeError, match="needs an xgboost.Booster"):
        dump_artifact(object(), XGBOOST)

    from sklearn.linear_model import LinearRegression

    fitted = LinearRegression().fit(features, features[:, 1])
    skops = dump_artifact(fitted, SKOPS)
    assert skops.data[:2] == b"PK"  # a skops zip
    np.testing.assert_allclose(
        load_artifact(skops.data, SKOPS).predict(features), fitted.predict(features)
    )


def test_artifacts_makes_public_methods_remote_and_keeps_the_originals():
    @artifacts([XgboostModel("model")])
    class Model(NpuModel):
        def run(self, x):
            return self.helper(x)

        def helper(self, x):
            return x

        def _private(self):
            return 1

    assert set(getattr(Model, LOCAL_METHODS)) == {"run", "helper"}
    assert public_methods(Model) == ["helper", "run"]
    model = Model()
    assert model._private() == 1  # private methods stay local
    with pytest.raises(RuntimeError, match=r"call \.artifacts\(\{'model': \.\.\.\}\) first"):
        model.run(1)
    with pytest.raises(KeyError, match="declares no artifact 'other'"):
        model.artifacts({"other": 1})
