"""The clips fidelity is proven on, and how funasr's own entry points read them.

Speech (espeak-ng), noise and a tone, 1 to 25 s: the lengths a batch pads against each other,
all under one model window so nothing is split by the VAD. Written as 16 kHz mono 16-bit WAV,
the upload whose samples both sides decode identically.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from asr_serve.config import SAMPLE_RATE
from devtools.speech import encode, noise, synthesize, tone
from devtools.text import SENTENCES

#: name -> (kind, seconds); speech clips start at different sentences.
CLIPS: dict[str, tuple[str, float]] = {
    "speech-1s": ("speech", 1.0),
    "speech-3s": ("speech", 3.0),
    "speech-7s": ("speech", 7.0),
    "speech-15s": ("speech", 15.0),
    "speech-25s": ("speech", 25.0),
    "noise-3s": ("noise", 3.0),
    "tone-7s": ("tone", 7.0),
}
#: funasr's server removes rich tags (``<|en|>``) and strips what ``AutoModel`` returns.
_TAG = re.compile(r"<\|[^|]*\|>")


@functools.cache
def _speech() -> np.ndarray:
    """All the test sentences spoken once, about 40 s: long enough to cut every clip from."""
    return synthesize(". ".join(SENTENCES))


def clip(name: str) -> np.ndarray:
    """The clip ``name`` of :data:`CLIPS` as 16 kHz mono float32."""
    kind, seconds = CLIPS[name]
    n = round(seconds * SAMPLE_RATE)
    if kind == "noise":
        return noise(seconds, seed=n)
    if kind == "tone":
        return tone(330.0, seconds)
    speech = _speech()
    start = (list(CLIPS).index(name) * 2 * SAMPLE_RATE) % (len(speech) - n)
    return speech[start : start + n]


def write_wavs(directory: Path) -> dict[str, Path]:
    """Every clip as a 16 kHz mono 16-bit WAV file in ``directory``."""
    paths = {}
    for name in CLIPS:
        paths[name] = directory / f"{name}.wav"
        paths[name].write_bytes(encode(clip(name), SAMPLE_RATE, "wav"))
    return paths


def funasr_text(raw: str) -> str:
    """``AutoModel.generate``'s text as funasr's server answers it: tags removed, stripped."""
    return _TAG.sub("", raw).strip()
