from __future__ import annotations

import pytest

from asr_serve.speakers.encoder import SpeakerEncoder


@pytest.fixture(scope="session")
def encoder() -> SpeakerEncoder:
    """The real GE2E encoder, weights from the installed resemblyzer wheel."""
    return SpeakerEncoder()
