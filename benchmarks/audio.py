"""The benchmark's audio: espeak-ng speech cut to fixed lengths, encoded once, reused by all.

Every system gets the same bytes in the same order, so differences are the server's alone.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from asr_serve.config import SAMPLE_RATE
from devtools.speech import encode, synthesize

#: Enough text for the longest clip; clips are cut from its start.
_TEXT = (
    "the quick brown fox jumps over the lazy dog while the early bird catches the worm. "
    "a journey of a thousand miles begins with a single step and ends with a good meal. "
    "speech recognition turns spoken words into text that machines can search and read. "
    "every request in this benchmark carries real speech so the decoder has real work. "
)


class Clip(BaseModel):
    """One upload: its encoded bytes and the decoded samples the in-process engine gets."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    seconds: float
    data: bytes
    samples: np.ndarray
    filename: str


@functools.lru_cache(maxsize=1)
def _speech() -> np.ndarray:
    return synthesize(_TEXT, word_gap=5)


def make_clip(seconds: float, fmt: str = "wav") -> Clip:
    """``seconds`` of speech (looped if the text runs out), encoded as ``fmt``."""
    speech = _speech()
    n = round(seconds * SAMPLE_RATE)
    samples = np.resize(speech, n).astype(np.float32)
    data = encode(samples, SAMPLE_RATE, fmt)
    ext = "wav" if fmt.startswith("wav") else fmt.split("-")[0]
    return Clip(
        name=f"{seconds:g}s",
        seconds=n / SAMPLE_RATE,
        data=data,
        samples=samples,
        filename=f"clip-{seconds:g}s.{ext}",
    )


def make_mix(lengths: Sequence[float], fmt: str = "wav") -> list[Clip]:
    """One clip per length; requests cycle through them in this order."""
    return [make_clip(s, fmt) for s in lengths]


def sequence(mix: Sequence[Clip], n: int) -> list[Clip]:
    """The first ``n`` requests of a run: the mix, repeated."""
    return [mix[i % len(mix)] for i in range(n)]
