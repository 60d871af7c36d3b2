"""Deployed classes: a warm method call against a plain function call, side by side;
the constructor's cost paid once over many calls; a second ``artifacts()`` of the same
model uploading nothing."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.config import Sizes
from benchmarks.harness import Runner
from benchmarks.results import BenchResult, Row, median, ratio
from benchmarks.workloads import noop
from client_sdk import compute_this
from client_sdk.models import NpuModel, XgboostModel, artifacts

NAME = "models"


class SlowToLoad:
    """A model whose constructor takes ``load_seconds`` (a weights load, say)."""

    def __init__(self, load_seconds: float) -> None:
        time.sleep(load_seconds)
        self.built_at = time.time()

    def echo(self, x: Any) -> tuple[Any, float]:
        """``x`` back, with when this instance was built."""
        return x, self.built_at


@artifacts([XgboostModel("model")])
class Boosted(NpuModel):
    def run(self, x):
        return self.model.predict(x)


def run(runner: Runner, sizes: Sizes) -> BenchResult:
    """The three measurements, on the shared cluster."""
    runner.harness(sizes.workers)
    result = BenchResult(NAME)
    result.data["calls"] = _calls(sizes, result)
    result.data["artifacts"] = _artifacts(result)
    return result


def _calls(sizes: Sizes, result: BenchResult) -> dict[str, Any]:
    remote = compute_this(noop)
    start = time.perf_counter()
    deployment = compute_this(SlowToLoad).deploy(sizes.model_load_seconds)
    deploy_seconds = time.perf_counter() - start
    try:
        deployment.echo.compute(0)  # warm: the replica's worker has its constructor
        remote.compute(0)
        timings: dict[str, list[float]] = {"method": [], "function": []}
        built = set()
        start_all = time.perf_counter()
        for i in range(sizes.model_calls):  # interleaved: a slow spell hits both
            start = time.perf_counter()
            value, built_at = deployment.echo.compute(i)
            timings["method"].append(time.perf_counter() - start)
            assert value == i
            built.add(built_at)
            start = time.perf_counter()
            remote.compute(i)
            timings["function"].append(time.perf_counter() - start)
        all_seconds = time.perf_counter() - start_all
    finally:
        deployment.close()
    ours, theirs = median(timings["method"]) * 1e3, median(timings["function"]) * 1e3
    result.rows.append(
        Row(
            "warm method call p50 (vs function compute)",
            ratio(ours, theirs),
            "<=",
            1.2,
            "ms",
            ours,
            theirs,
        )
    )
    result.rows.append(
        Row(
            f"constructor runs over {sizes.model_calls} calls "
            f"({sizes.model_load_seconds:g} s each)",
            float(len(built)),
            "<=",
            1.0,
        )
    )
    return {
        "deploy_s": round(deploy_seconds, 3),
        "calls_s": round(all_seconds, 3),
        "method_ms": [round(s * 1e3, 3) for s in timings["method"]],
        "function_ms": [round(s * 1e3, 3) for s in timings["function"]],
    }


def _artifacts(result: BenchResult) -> dict[str, Any]:
    import numpy as np
    import xgboost as xgb

    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 20))
    train = xgb.DMatrix(features, label=features[:, 0] > 0)
    booster = xgb.train({"max_depth": 6}, train, num_boost_round=50)
    first, second = Boosted(), Boosted()
    start = time.perf_counter()
    first.artifacts({"model": booster})
    first_seconds = time.perf_counter() - start
    start = time.perf_counter()
    second.artifacts({"model": booster})
    second_seconds = time.perf_counter() - start
    result.rows.append(
        Row(
            "second artifacts() upload, bytes sent", float(second.last_upload_bytes), "<=", 0.0, "B"
        )
    )
    start = time.perf_counter()
    predicted = second.run(xgb.DMatrix(features[:100]))
    first_call_seconds = time.perf_counter() - start
    assert len(predicted) == 100
    second.close()
    return {
        "artifact_bytes": first.last_upload_bytes,
        "first_artifacts_s": round(first_seconds, 3),
        "second_artifacts_s": round(second_seconds, 3),
        "first_call_with_deploy_s": round(first_call_seconds, 3),
    }
