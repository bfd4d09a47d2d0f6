from __future__ import annotations

import pytest

from asr_serve.speakers.ge2e import GE2EEncoder


@pytest.fixture(scope="session")
def encoder() -> GE2EEncoder:
    """The real GE2E encoder, weights from the installed resemblyzer wheel."""
    return GE2EEncoder()
