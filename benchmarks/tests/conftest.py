"""The suite's fixtures for the shared data (skip where it is absent)."""
from tests.conftest import shared_dir, shared_weights_dir  # noqa: F401
