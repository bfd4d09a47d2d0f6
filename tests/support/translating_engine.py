"""The real funasr engine on the tiny checkpoint, claiming it can translate.

No multilingual Whisper weights exist on this machine, so routing ``/v1/audio/translations``
to a model that can translate is tested with this engine, served as ``engine:
tests.support.translating_engine:TranslatingEngine``: everything around it (capabilities
asked of the replica, batching, the ingress) is real. Its "translation" is the transcript
marked with :data:`MARK`, so a test sees which task the engine was given.
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
