"""Streaming silero VAD on espeak speech: chunking changes nothing, speech scores high."""

from __future__ import annotations

import numpy as np
import pytest

from asr_serve.live.vad import FRAME, VADStream
from devtools.speech import Speech, speech_with_pauses
from devtools.text import SENTENCES
from tests.support.realtime import chunks


@pytest.fixture(scope="module")
def speech() -> Speech:
    return speech_with_pauses([SENTENCES[0], SENTENCES[1]], pause_s=1.0)


def _feed(audio: np.ndarray, size: int) -> np.ndarray:
    stream = VADStream()
    parts = [stream.feed(np.frombuffer(c, dtype=np.float32)) for c in chunks(audio.tobytes(), size)]
    return np.concatenate(parts)


def test_probabilities_do_not_depend_on_chunking(speech: Speech) -> None:
    whole = _feed(speech.audio, len(speech.audio) * 4)
    assert len(whole) == len(speech.audio) // FRAME
    for samples in (320, 1600, 777):  # 20 ms, 100 ms, uneven
        np.testing.assert_allclose(_feed(speech.audio, samples * 4), whole, atol=1e-6)


def test_speech_scores_high_and_silence_low(speech: Speech) -> None:
    probs = _feed(speech.audio, 1600 * 4)
    (start1, end1), (start2, end2) = ((a // FRAME, b // FRAME) for a, b in speech.spans)
    inside = np.concatenate([probs[start1 + 3 : end1 - 3], probs[start2 + 3 : end2 - 3]])
    assert np.median(inside) > 0.8
    # Silence before, and in the pause once the model's memory of the speech has faded.
    assert probs[: start1 - 2].max() < 0.2
    assert probs[end1 + 8 : start2 - 2].max() < 0.2


def test_two_streams_keep_their_own_state(speech: Speech) -> None:
    one, two = VADStream(), VADStream()
    a, b = speech.audio[: 16_000 * 3], np.zeros(16_000 * 3, dtype=np.float32)
    interleaved_a, interleaved_b = [], []
    for i in range(0, len(a), 1600):
        interleaved_a.append(one.feed(a[i : i + 1600]))
        interleaved_b.append(two.feed(b[i : i + 1600]))
    np.testing.assert_array_equal(np.concatenate(interleaved_a), _feed(a, len(a) * 4))
    np.testing.assert_array_equal(np.concatenate(interleaved_b), _feed(b, len(b) * 4))
