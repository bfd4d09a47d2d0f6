"""The real funasr engine on the tiny checkpoint, claiming it can translate.

The OpenAI contract tests route ``/v1/audio/translations`` among three models with this
engine as the one that translates, served as ``engine:
tests.support.translating_engine:TranslatingEngine``: everything around it (capabilities
asked of the replica, batching, the ingress) is real, and it costs the tiny checkpoint, not
a second Whisper (real translation by Whisper base is ``tests/e2e/test_multilingual.py``).
Its "translation" is the transcript marked with :data:`MARK`, so a test sees which task the
engine was given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from asr_serve.engines.base import EngineCapabilities, EngineResult, TranscribeOptions
from asr_serve.engines.funasr import FunASREngine

MARK = "[translated]"


class TranslatingEngine(FunASREngine):
    capabilities = EngineCapabilities(translate=True, keywords=True)

    def transcribe(
        self, audios: Sequence[np.ndarray], options: Sequence[TranscribeOptions]
    ) -> list[EngineResult]:
        results = super().transcribe(audios, options)
        return [
            r.model_copy(update={"text": f"{MARK} {r.text}", "language": "en"})
            if o.task == "translate"
            else r
            for r, o in zip(results, options, strict=True)
        ]
