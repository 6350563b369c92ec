"""Shared test settings: single-threaded torch (tests run beside other work), no progress bars."""

import os

os.environ.setdefault("TMS_NO_PROGRESS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def repo_root() -> str:
    return REPO
