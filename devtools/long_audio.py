"""A long recording with known text and known pauses, built from espeak sentences.

Long-audio tests and benchmarks need minutes of speech whose sentence boundaries are known
exactly, to check where the VAD cuts and what each piece says. Sentences are spoken once
each (espeak output is cached) and laid end to end with silences between them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from asr_serve.config import SAMPLE_RATE
from devtools.speech import synthesize
from devtools.text import SENTENCES

#: Samples quieter than this count as silence when the true speech bounds are measured.
_SILENCE = 1e-3


@dataclass(frozen=True)
class Recording:
    samples: np.ndarray
    """16 kHz mono float32."""
    texts: tuple[str, ...]
    """What each sentence says, in order."""
    speech: tuple[tuple[int, int], ...]
    """Each sentence's audible ``[start, end)`` in samples; between them is digital silence."""

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def pauses_s(self) -> list[tuple[float, float]]:
        """The silent gaps between sentences, in seconds."""
        return [
            (end / SAMPLE_RATE, start / SAMPLE_RATE)
            for (_, end), (start, _) in itertools.pairwise(self.speech)
        ]


def long_recording(
    seconds: float,
    *,
    pause_s: tuple[float, float] = (1.0, 1.5),
    sentences: tuple[str, ...] = SENTENCES,
    seed: int = 0,
) -> Recording:
    """At least ``seconds`` of the ``sentences`` in turn, with uniform random pauses."""
    rng = np.random.default_rng(seed)
    spoken = {text: _trimmed(synthesize(text)) for text in sentences}
    parts: list[np.ndarray] = []
    texts: list[str] = []
    speech: list[tuple[int, int]] = []
    length = 0
    while length < seconds * SAMPLE_RATE:
        text = sentences[len(texts) % len(sentences)]
        silence = np.zeros(round(rng.uniform(*pause_s) * SAMPLE_RATE), np.float32)
        parts += [silence, spoken[text]]
        texts.append(text)
        speech.append((length + len(silence), length + len(silence) + len(spoken[text])))
        length = speech[-1][1]
    parts.append(np.zeros(round(pause_s[0] * SAMPLE_RATE), np.float32))
    return Recording(samples=np.concatenate(parts), texts=tuple(texts), speech=tuple(speech))


def _trimmed(audio: np.ndarray) -> np.ndarray:
    """The audible part of a synthesized sentence, without its leading/trailing silence."""
    loud = np.flatnonzero(np.abs(audio) > _SILENCE)
    return audio[loud[0] : loud[-1] + 1]
