"""The distribute challenge's level 2: a model class whose methods run on a worker that
holds its artifacts.

    @artifacts([XgboostModel("model")])
    class MyModel(NpuModel):
        def run(self, x):
            return self.model.predict(x)

    model = MyModel()
    model.artifacts({"model": booster})   # uploaded once per tenant, by SHA-256
    out = model.run(X_test)               # runs on a worker; X_test may be a DMatrix

``@artifacts`` turns the class's public methods into remote ones here (the originals go
with the class, by value, and run on the worker). The first remote call deploys the
instance (:func:`client_sdk.deployment.deploy`); ``close()`` releases it. Artifacts are
sent in each framework's own format (:mod:`client_sdk.artifact_formats`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dill

from client_sdk.artifact_formats import SKOPS, TORCH, XGBOOST, dump_artifact, load_artifact
from client_sdk.client import Client, default_client
from client_sdk.deployment import Deployment, deploy
from client_sdk.errors import ApiError, SizeLimitExceeded
from wire.http import MAX_BUNDLE_HEADER

ARTIFACTS = "__computethis_artifacts__"
LOCAL_METHODS = "__computethis_local_methods__"  # read by worker.models
MANIFEST = "computethis-model.json"


@dataclass(frozen=True)
class ArtifactSpec:
    """A named artifact of a model class and its framework's format."""

    name: str
    format: str


def XgboostModel(name: str) -> ArtifactSpec:  # noqa: N802 - the challenge's spelling
    """An ``xgboost.Booster`` artifact (sent as ``save_raw("ubj")``)."""
    return ArtifactSpec(name, XGBOOST)


def PytorchModel(name: str) -> ArtifactSpec:  # noqa: N802
    """A ``torch.nn.Module`` artifact (its ``state_dict``, loaded with weights_only)."""
    return ArtifactSpec(name, TORCH)


def SklearnModel(name: str) -> ArtifactSpec:  # noqa: N802
    """A scikit-learn estimator artifact (sent as a skops file)."""
    return ArtifactSpec(name, SKOPS)


class _Remote:
    """A public method of an ``@artifacts`` class, here: calling it runs it remotely."""

    def __init__(self, name: str, function: Any) -> None:
        self.name = name
        self.__doc__ = getattr(function, "__doc__", None)
        self.__wrapped__ = function

    def __get__(self, instance: Any, owner: type) -> Any:
        if instance is None:
            return self
        return _deployment_of(instance).__getattr__(self.name)


def artifacts(specs: Iterable[ArtifactSpec]) -> Any:
    """Class decorator: the model's artifacts, by name (``XgboostModel('model')``...).
    The class's public methods then run on a worker holding them."""
    declared = {spec.name: spec for spec in specs}

    def wrap(cls: type) -> type:
        if not (isinstance(cls, type) and issubclass(cls, NpuModel)):
            raise TypeError("@artifacts decorates a subclass of NpuModel")
        local: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if klass is object or klass is NpuModel or not issubclass(klass, NpuModel):
                continue
            for name, value in vars(klass).items():
                if not name.startswith("_") and inspect.isfunction(value):
                    local[name] = value
        for name, function in local.items():
            setattr(cls, name, _Remote(name, function))
        setattr(cls, LOCAL_METHODS, local)
        setattr(cls, ARTIFACTS, declared)
        return cls

    return wrap


class NpuModel:
    """The challenge's parent class: a model whose public methods (once the class is
    decorated with :func:`artifacts`) run on a worker holding its artifacts.

    ``replicas`` (class attribute) is how many instances are deployed; ``client`` the
    gateway (default: the default client's). ``save()``/``load()`` keep the artifacts
    in a local folder, each in its framework's format.
    """

    replicas = 1
    client: Client | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        instance = super().__new__(cls)
        instance.__dict__["_computethis"] = {
            "init": (args, kwargs),
            "artifacts": {},
            "deployment": None,
            "uploaded": 0,
        }
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    @property
    def last_upload_bytes(self) -> int:
        """Bytes the last :meth:`artifacts` call uploaded (0: the gateway had them all)."""
        return self.__dict__["_computethis"]["uploaded"]

    def artifacts(self, models: dict[str, Any]) -> None:
        """Attach the models (by the names the class declares), serialized in their own
        format and uploaded unless this tenant's gateway already has them."""
        state = self.__dict__["_computethis"]
        declared = getattr(type(self), ARTIFACTS, {})
        client = self.client or default_client()
        uploaded = 0
        specs = dict(state["artifacts"])
        for name, model in models.items():
            if name not in declared:
                raise KeyError(
                    f"{type(self).__name__} declares no artifact {name!r} "
                    f"(it declares {', '.join(declared) or 'none'}): add it to @artifacts([...])"
                )
            dumped = dump_artifact(model, declared[name].format)
            digest = hashlib.sha256(dumped.data).hexdigest()
            uploaded += upload_artifact(client, digest, dumped.data)
            specs[name] = {"format": dumped.format, "sha256": digest, "skeleton": dumped.skeleton}
            self.__dict__[name] = model  # usable here too
        if {n: s["sha256"] for n, s in specs.items()} != {
            n: s["sha256"] for n, s in state["artifacts"].items()
        }:
            self.close()  # other models: the next call deploys again
        state["artifacts"] = specs
        state["uploaded"] = uploaded

    def deployment(self) -> Deployment:
        """This instance's deployment, made on first use."""
        return _deployment_of(self)

    def close(self) -> None:
        """Close this instance's deployment, if it has one."""
        state = self.__dict__["_computethis"]
        if state["deployment"] is not None:
            state["deployment"].close()
            state["deployment"] = None

    def save(self, path: str | Path | None = None) -> Path:
        """Write the artifacts to a folder (default ``<ClassName>.npu``), each in its
        own format, with a manifest; returns the folder."""
        folder = Path(path or f"{type(self).__name__}.npu")
        folder.mkdir(parents=True, exist_ok=True)
        declared = getattr(type(self), ARTIFACTS, {})
        manifest = {}
        for name, spec in declared.items():
            if name not in self.__dict__:
                continue
            dumped = dump_artifact(self.__dict__[name], spec.format)
            (folder / f"{name}.{spec.format}").write_bytes(dumped.data)
            if dumped.skeleton is not None:  # the module's class and shape, not weights
                (folder / f"{name}.skeleton").write_bytes(dill.dumps(dumped.skeleton))
            manifest[name] = {"format": spec.format}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return folder

    def load(self, path: str | Path | None = None) -> None:
        """Read the artifacts :meth:`save` wrote and attach them (see :meth:`artifacts`)."""
        folder = Path(path or f"{type(self).__name__}.npu")
        manifest = json.loads((folder / MANIFEST).read_text())
        models = {}
        for name, item in manifest.items():
            skeleton_file = folder / f"{name}.skeleton"
            skeleton = dill.loads(skeleton_file.read_bytes()) if skeleton_file.exists() else None
            data = (folder / f"{name}.{item['format']}").read_bytes()
            models[name] = load_artifact(data, item["format"], skeleton)
        self.artifacts(models)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The challenge's entry point (override it)."""
        return None


def _deployment_of(instance: NpuModel) -> Deployment:
    state = instance.__dict__["_computethis"]
    if state["deployment"] is None:
        args, kwargs = state["init"]
        declared = getattr(type(instance), ARTIFACTS, {})
        missing = sorted(set(declared) - set(state["artifacts"]))
        if missing:
            raise RuntimeError(
                f"{type(instance).__name__} has no {', '.join(missing)} yet: call "
                f".artifacts({{{', '.join(repr(m) + ': ...' for m in missing)}}}) first"
            )
        state["deployment"] = deploy(
            type(instance),
            args,
            kwargs,
            replicas=type(instance).replicas,
            name=type(instance).__qualname__,
            client=instance.client,
            artifacts=state["artifacts"],
        )
    return state["deployment"]


def upload_artifact(client: Client, digest: str, data: bytes) -> int:
    """Upload an artifact unless the gateway has it already; the bytes sent (0 if it
    had it). Over the gateway's limit nothing is sent: :class:`SizeLimitExceeded`."""
    path = f"/artifacts/{digest}"
    try:
        client.transport.request("GET", path)
        return 0
    except ApiError as exc:
        if exc.status != 404:
            raise
        limit = int(exc.headers.get(MAX_BUNDLE_HEADER, 0) or 0)
    if limit and len(data) > limit:
        raise SizeLimitExceeded(
            f"the artifact is {len(data)} bytes and the gateway takes at most {limit} "
            "(--max-bundle): ask the operator to raise it"
        )
    client.transport.request(
        "PUT",
        path,
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=max(60.0, len(data) / 10e6),
    )
    return len(data)
