"""Shared pytest fixtures: location of the read-only shared data (weights, reference outputs)."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``$ASLNET_SHARED``, default ``../shared`` next to the repository; skip if absent."""
    path = Path(os.environ.get("ASLNET_SHARED") or REPO_ROOT.parent / "shared")
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found (set ASLNET_SHARED)")
    return path


@pytest.fixture(scope="session")
def shared_weights_dir(shared_dir: Path) -> Path:
    """The shared pretrained-weight folder (``<shared>/weights``); skip if absent."""
    path = shared_dir / "weights"
    if not path.is_dir():
        pytest.skip(f"pretrained weights folder {path} not found")
    return path
