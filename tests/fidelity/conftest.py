"""Fixtures for the fidelity tests: the tiny checkpoint and funasr's own ``AutoModel`` on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.tiny_model import ensure_tiny_model
from tests.fidelity.clips import write_wavs


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return ensure_tiny_model()


@pytest.fixture(scope="session")
def funasr_model(tiny_model_dir: Path) -> Any:
    """``funasr.AutoModel`` on the checkpoint, loaded as funasr's own server loads it."""
    from funasr import AutoModel

    return AutoModel(model=str(tiny_model_dir), device="cpu", disable_update=True)


@pytest.fixture(scope="session")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_wavs(tmp_path_factory.mktemp("fidelity-wavs"))
