"""The challenge's pytorch_usage.py through the real stack (``make test-torch``: PyTorch
from PyPI pulls several GB of CUDA packages, so this is not part of ``make test``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import client_sdk
from distribute_challenge import NpuModel, PytorchModel, artifacts
from tests.stack import Stack, start_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("torch") / "save", workers=2)
    previous = client_sdk.set_default_client(client_sdk.Client(running.url, running.token))
    yield running
    client_sdk.set_default_client(previous)
    running.stop()


@artifacts([PytorchModel("model")])
class MyModel(NpuModel):
    def __init__(self):
        super().__init__()

    def prediction(self, x):
        out = self.model(x)
        return out

    def run(self, x):
        out = self.prediction(x)
        return out


def test_the_pytorch_usage_file_runs_on_a_worker(stack: Stack, tmp_path: Path):
    net = torch.nn.Sequential(torch.nn.Linear(4, 10), torch.nn.ReLU(), torch.nn.Linear(10, 1))
    x = torch.rand((2, 4), requires_grad=False)

    model = MyModel()
    model.artifacts({"model": net})
    assert model.last_upload_bytes > 0
    try:
        out = model.run(x)
        with torch.no_grad():
            torch.testing.assert_close(out, net(x))
        again = MyModel()
        again.artifacts({"model": net})
        assert again.last_upload_bytes == 0  # the same state_dict: nothing sent
        folder = model.save(tmp_path / "net.npu")
        loaded = MyModel()
        loaded.load(folder)
        with torch.no_grad():
            torch.testing.assert_close(loaded.run(x), net(x))
        loaded.close()
    finally:
        model.close()
