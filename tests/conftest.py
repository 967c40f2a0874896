"""Fixtures shared by every test package."""

from __future__ import annotations

import os

import pytest
import torch

from twostream.contract import ModelContract
from twostream.model import TwoStreamNet


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    """Engines built from model files go to a temporary cache, never the user's: set in
    os.environ so the commands the tests run in subprocesses see it too."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(scope="session")
def make_perturbed_model():
    """Random weights, perturbed away from the head's identity init so every part of the
    network matters to the logits (a parity test on a near-constant net proves little)."""

    def make(contract: ModelContract) -> TwoStreamNet:
        torch.manual_seed(0)
        model = TwoStreamNet(contract).eval()
        with torch.no_grad():
            for param in model.parameters():
                param.add_(0.05 * torch.randn_like(param))
        return model

    return make


@pytest.fixture
def one_thread():
    """One torch thread for a test: tiny convolutions gain nothing from a second one, and on a
    2-core machine busy with other jobs OpenMP's waiting threads made the resume test ten times
    slower (5 s vs 54 s); torchrun's processes run so too (OMP_NUM_THREADS=1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
