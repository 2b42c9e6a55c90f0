"""Test setup: make ``scripts/`` importable so tests use ``segcore`` exactly as the rule scripts do."""

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))


@pytest.fixture(scope="module")
def single_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for a module of tiny-tensor tests: thread barriers would dominate them on the
    busy shared machine. Use with ``pytestmark = pytest.mark.usefixtures("single_torch_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
