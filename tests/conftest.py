"""Shared fixtures: the ../shared folder (real data and weights) and small deterministic images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path | None:
    """``$TASKDERAIN_SHARED`` or ``../shared`` beside the checkout, if it exists."""
    env = os.environ.get("TASKDERAIN_SHARED")
    candidate = Path(env) if env else REPO.parent / "shared"
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path to ../shared; skips the test with a clear reason when it is absent."""
    path = shared_dir()
    if path is None:
        pytest.skip("needs ../shared (or $TASKDERAIN_SHARED) with the real data and weights; not present here")
    return path


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def one_thread():
    """One torch thread: bitwise-equal runs need the same thread count in every process (training
    subprocesses use 1), tiny tensors gain nothing from threads, and OpenMP barriers stall when the
    cores are shared. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

