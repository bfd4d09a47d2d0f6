"""Fixtures every test package shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.tiny_model import ensure_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The generated tiny Fun-ASR-Nano checkpoint (made once, then reused from its cache)."""
    return ensure_tiny_model()
