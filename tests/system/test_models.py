"""Deployed classes (``@compute_this`` on a class, the challenge's ``NpuModel``) through
the real stack: state kept between calls, ``__init__`` once per replica, replicas
spread, reattaching, closing, artifacts uploaded once, bad input refused clearly."""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.parse

import numpy as np
import pytest
import requests
import xgboost as xgb

from client_sdk import (
    ApiError,
    Client,
    Deployment,
    Job,
    JobTimeout,
    SerializationError,
    compute_this,
)
from distribute_challenge import NpuModel, SklearnModel, XgboostModel, artifacts
from tests.stack import Stack, scrape_metrics
from tests.system.test_security import new_tenant

pytestmark = pytest.mark.usefixtures("sdk")
OCTET = {"Content-Type": "application/octet-stream"}


@compute_this
class Counter:
    """A counter whose construction is slow: paid once per replica."""

    def __init__(self, start: int, load_seconds: float = 0.2) -> None:
        time.sleep(load_seconds)
        self.n = start
        self.built_at = time.time()

    def add(self, k: int) -> int:
        self.n += k
        return self.n

    def shout(self) -> None:
        print(f"n is {self.n}")

    def where(self, _: object = None) -> tuple[int, int, float]:
        """(worker process, this instance, when it was built)."""
        return os.getpid(), id(self), self.built_at


class LoadFailed(Exception):
    pass


@compute_this
class Broken:
    def __init__(self) -> None:
        raise LoadFailed("weights are missing")

    def run(self) -> None:
        pass


def test_a_deployed_class_keeps_its_state_and_builds_once(sdk: Stack):
    counter = Counter.deploy(10)
    try:
        assert counter.add.compute(1) == 11
        assert counter.add.compute(1) == 12  # state kept between calls
        assert counter.add.submit(5).result(timeout=60) == 17
        assert counter.add.map([1, 2, 3]) == [18, 20, 23]
        places = {counter.where.compute() for _ in range(3)}
        assert len(places) == 1  # the same instance, built once
        shouted = counter.shout.submit()
        assert shouted.result(timeout=60) is None and shouted.logs() == "n is 23\n"
        again = Deployment.from_id(counter.id)  # as another process would
        assert again.add.compute(100) == 123
        listed = requests.get(sdk.api("/deployments"), headers=sdk.headers(), timeout=30).json()
        assert counter.id in [item["id"] for item in listed["deployments"]]
        jobs = requests.get(sdk.api("/jobs"), headers=sdk.headers(), timeout=30).json()["jobs"]
        assert {"model"} <= {job["kind"] for job in jobs}
        metrics = scrape_metrics(sdk)
        assert metrics["computethis_deployments"] >= 1
        with pytest.raises(AttributeError, match="no public method 'nope'"):
            counter.nope  # noqa: B018 - unknown methods fail here, before sending
    finally:
        counter.close()
    with pytest.raises(ApiError) as closed:
        counter.add.compute(1)
    assert closed.value.status == 410 and "deploy the class again" in str(closed.value)
    listed = requests.get(sdk.api("/deployments"), headers=sdk.headers(), timeout=30).json()
    assert counter.id not in [item["id"] for item in listed["deployments"]]


def test_replicas_are_spread_over_workers_and_share_the_calls(sdk: Stack):
    counter = Counter.deploy(0, replicas=2)
    try:
        workers = [replica["worker"] for replica in counter.info()["replica_info"]]
        assert len(set(workers)) == 2
        places = counter.where.map(range(8))
        assert len({pid for pid, _, _ in places}) == 2  # both replicas answered
        assert len({built for _, _, built in places}) == 2  # each built once
    finally:
        counter.close()


def test_a_constructor_that_raises_fails_the_deployment_and_frees_the_worker(sdk: Stack):
    with pytest.raises(LoadFailed, match="weights are missing"):
        Broken.deploy()
    closed = requests.get(
        sdk.api("/deployments"), params={"closed": 1}, headers=sdk.headers(), timeout=30
    ).json()["deployments"]
    assert closed[0]["name"] == "Broken" and closed[0]["status"] == "closed"

    @compute_this
    def plus_one(x: int) -> int:
        return x + 1

    started = time.monotonic()
    assert plus_one.map(range(4)) == [1, 2, 3, 4]  # both workers are free
    assert time.monotonic() - started < 30


def test_arguments_that_cannot_be_sent_are_refused_before_sending(sdk: Stack):
    counter = Counter.deploy(0, load_seconds=0)
    try:
        with pytest.raises(SerializationError, match="a generator cannot be sent"):
            counter.add.compute(i for i in range(3))
    finally:
        counter.close()


@artifacts([XgboostModel("model")])
class BoostedModel(NpuModel):
    """The challenge's xgboost_usage.py model."""

    def __init__(self):
        super().__init__()

    def prediction(self, x):
        out = self.model.predict(x)
        return out

    def run(self, x):
        out = self.prediction(x)
        return out

    def where(self):
        return os.getpid()


def _booster(seed: int = 0) -> tuple[xgb.Booster, xgb.DMatrix]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(300, 5))
    label = (features[:, 0] + features[:, 1] > 0).astype(float)
    train = xgb.DMatrix(features, label=label, feature_names=list("abcde"))
    params = {"eta": 0.3, "max_depth": 3, "objective": "reg:squarederror"}
    return xgb.train(params, train, num_boost_round=5), xgb.DMatrix(
        features[:20], feature_names=list("abcde")
    )


def test_the_xgboost_usage_file_runs_with_a_dmatrix_and_uploads_once(sdk: Stack):
    booster, x_test = _booster()
    model = BoostedModel()
    model.artifacts({"model": booster})
    assert model.last_upload_bytes > 0
    assert scrape_metrics(sdk)["computethis_artifact_bytes_received_total"] > 0
    try:
        out = model.run(x_test)  # a DMatrix crosses as its data and is rebuilt there
        np.testing.assert_allclose(out, booster.predict(x_test), rtol=1e-6)
        assert model.where() != os.getpid()
        second = BoostedModel()
        second.artifacts({"model": booster})
        assert second.last_upload_bytes == 0  # same model, same tenant: nothing sent
        np.testing.assert_allclose(second.run(x_test), out)
        second.close()
        folder = model.save(sdk.save_dir.parent / "boosted.npu")
        third = BoostedModel()
        third.load(folder)
        np.testing.assert_allclose(third.run(x_test), out)
        third.close()
    finally:
        model.close()


@artifacts([SklearnModel("classifier")])
class Classifier(NpuModel):
    def run(self, x):
        return self.classifier.predict_proba(x)


def test_a_scikit_learn_model_travels_as_skops(sdk: Stack):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    features = rng.normal(size=(100, 3))
    fitted = LogisticRegression().fit(features, features[:, 0] > 0)
    model = Classifier()
    model.artifacts({"classifier": fitted})
    try:
        np.testing.assert_allclose(model.run(features[:5]), fitted.predict_proba(features[:5]))
    finally:
        model.close()


def _put_artifact(stack: Stack, body: bytes, digest: str, headers=None) -> requests.Response:
    return requests.put(
        stack.api(f"/artifacts/{digest}"),
        data=body,
        headers={**(headers or stack.headers()), **OCTET},
        timeout=30,
    )


def test_tampered_truncated_and_oversized_artifacts_are_refused(sdk: Stack):
    body = bytes(range(256)) * 64
    digest = hashlib.sha256(body).hexdigest()
    for bad in (body[:-100], body[:-1] + b"x"):  # truncated, tampered
        refused = _put_artifact(sdk, bad, digest)
        assert refused.status_code == 400
        assert refused.json()["error"] == "artifact_digest_mismatch"
    assert requests.get(sdk.api(f"/artifacts/{digest}"), headers=sdk.headers()).status_code == 404
    limit = int(
        requests.get(sdk.api(f"/artifacts/{digest}"), headers=sdk.headers()).headers[
            "X-Computethis-Max-Bundle"
        ]
    )
    url = urllib.parse.urlsplit(sdk.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.putrequest("PUT", f"/api/v1/artifacts/{digest}")
    for name, value in {**sdk.headers(), **OCTET, "Content-Length": str(limit + 1)}.items():
        connection.putheader(name, value)
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 413
    assert str(limit) in answer.read().decode()
    connection.close()
    bad_digest = _put_artifact(sdk, body, "not-a-digest")
    assert bad_digest.status_code == 400 and "SHA-256" in bad_digest.json()["message"]
    missing = requests.post(
        sdk.api("/deployments"),
        params={"artifacts": digest},
        data=b"x",
        headers={**sdk.headers(), **OCTET},
        timeout=30,
    )
    assert missing.status_code == 404 and missing.json()["error"] == "artifact_not_found"
    unknown = requests.post(
        sdk.api(f"/deployments/{'0' * 32}/calls"),
        data=b"x",
        headers={**sdk.headers(), **OCTET},
        timeout=30,
    )
    assert unknown.status_code == 404 and unknown.json()["error"] == "deployment_not_found"


def test_other_tenants_cannot_call_list_or_reuse_deployments_and_artifacts(sdk: Stack):
    alice = Client(sdk.url, new_tenant(sdk, "model-alice")["Authorization"].split()[1])
    bob_headers = new_tenant(sdk, "model-bob")
    booster, x_test = _booster(2)

    @artifacts([XgboostModel("model")])
    class AliceModel(NpuModel):
        client = alice

        def run(self, x):
            return self.model.predict(x)

    model = AliceModel()
    model.artifacts({"model": booster})
    try:
        model.run(x_test)
        deployment = model.deployment()
        digest = deployment.info()["artifacts"][0]
        for path in (f"/deployments/{deployment.id}", f"/artifacts/{digest}"):
            assert requests.get(sdk.api(path), headers=bob_headers).status_code == 404
        listed = requests.get(sdk.api("/deployments"), headers=bob_headers).json()
        assert listed["deployments"] == []
        call = requests.post(
            sdk.api(f"/deployments/{deployment.id}/calls"),
            data=b"x",
            headers={**bob_headers, **OCTET},
            timeout=30,
        )
        assert call.status_code == 404
        reuse = requests.post(
            sdk.api("/deployments"),
            params={"artifacts": digest},
            data=b"x",
            headers={**bob_headers, **OCTET},
            timeout=30,
        )
        assert reuse.status_code == 404 and reuse.json()["error"] == "artifact_not_found"
        closing = requests.delete(sdk.api(f"/deployments/{deployment.id}"), headers=bob_headers)
        assert closing.status_code == 404
        assert model.run(x_test) is not None  # untouched
    finally:
        model.close()


@compute_this(timeout=1.5)
class Sleeper:
    def __init__(self) -> None:
        self.calls = 0

    def nap(self, seconds: float) -> int:
        time.sleep(seconds)
        self.calls += 1
        return self.calls


def test_a_call_past_its_timeout_fails_and_the_replica_is_rebuilt(sdk: Stack):
    sleeper = Sleeper.deploy()
    try:
        assert sleeper.nap.compute(0) == 1
        job = sleeper.nap.submit(30)
        with pytest.raises(JobTimeout):
            job.result(timeout=60)
        assert job.info()["kind"] == "model"
        assert sleeper.nap.compute(0) == 1  # its worker was restarted: built again
    finally:
        sleeper.close()


@compute_this
class Napper:
    """Counts its calls; each names the instance that answered it."""

    def __init__(self) -> None:
        self.calls = 0

    def nap(self, seconds: float) -> tuple[int, int, int]:
        time.sleep(seconds)
        self.calls += 1
        return self.calls, os.getpid(), id(self)


def test_cancelling_a_call_waiting_behind_another_leaves_the_running_one_and_the_replica(
    sdk: Stack,
):
    napper = Napper.deploy()
    try:
        _, pid, instance = napper.nap.compute(0)
        running = napper.nap.submit(3)
        deadline = time.monotonic() + 30
        while running.status() != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        waiting = napper.nap.submit(0)  # pinned to the same worker, behind the other
        time.sleep(0.3)
        waiting.cancel()
        assert waiting.status() == "cancelled"
        # The worker was not restarted: the call it ran ends there, on the same
        # instance, once; and the replica is not built again.
        assert running.result(timeout=60) == (2, pid, instance)
        assert running.info()["attempts"] == 1
        assert napper.nap.compute(0) == (3, pid, instance)
    finally:
        napper.close()


@compute_this
class FirstBuildFails:
    """Its constructor fails the first time only (a file says it has run)."""

    def __init__(self, marker: str) -> None:
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise LoadFailed("the first build fails")

    def ping(self) -> str:
        return "pong"


def test_a_replica_built_by_a_call_after_its_constructor_failed_is_ready(sdk: Stack, tmp_path):
    deployment = FirstBuildFails.deploy(str(tmp_path / "built-once"), wait=False)
    try:
        construct = Job(deployment.info()["replica_info"][0]["construct_job"])
        with pytest.raises(LoadFailed):
            construct.result(timeout=60)
        assert deployment.status() == "failed"
        assert deployment.ping.compute() == "pong"  # the call built it again
        assert deployment.status() == "ready"
    finally:
        deployment.close()
