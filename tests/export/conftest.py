from __future__ import annotations

import pytest

from models.algorithms.demo_policy import DemoTraining
from tests.tiny_policy import tiny_training


@pytest.fixture(scope="session")
def trained() -> DemoTraining:
    return tiny_training()
