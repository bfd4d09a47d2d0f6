"""The real funasr engine with a failure on request, for tests of our own failures.

Served as ``engine: tests.support.faulty_engine:FailOnPromptEngine`` (the custom-engine form
of ``models[].engine``): an item whose prompt is :data:`FAIL_PROMPT` makes the whole engine
call raise a plain ``RuntimeError``, as a library bug or a broken kernel would. Everything
around it (batching, the replica, Ray, the ingress) runs for real.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.engines.funasr import FunASREngine

FAIL_PROMPT = "raise-an-engine-failure"


class FailOnPromptEngine(FunASREngine):
    def transcribe(
        self, audios: Sequence[np.ndarray], options: Sequence[TranscribeOptions]
    ) -> list[EngineResult]:
        if any(o.prompt == FAIL_PROMPT for o in options):
            raise RuntimeError("injected engine failure")
        return super().transcribe(audios, options)
