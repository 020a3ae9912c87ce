from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from models.demo import DemoTraining
from tests.tiny_policy import tiny_training


@pytest.fixture(scope="session")
def trained() -> DemoTraining:
    return tiny_training()


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Small networks on a shared 2-core machine: a second torch thread only adds contention (8x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
