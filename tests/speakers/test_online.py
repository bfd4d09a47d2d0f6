"""A live session's speakers, utterance by utterance, on real embeddings."""

from __future__ import annotations

import numpy as np

from asr_serve.config import SpeakersConfig
from asr_serve.speakers.ge2e import GE2EEncoder
from asr_serve.speakers.online import OnlineSpeakers
from devtools.conversation import LINES, VOICES


def test_two_voices_keep_their_labels(encoder: GE2EEncoder) -> None:
    config = SpeakersConfig()
    online = OnlineSpeakers(threshold=config.live_threshold, max_speakers=config.max_speakers)
    voices = [VOICES[i % 2] for i in range(8)]
    vectors = encoder.embed([v.say(LINES[i]) for i, v in enumerate(voices)])
    labels = [online.assign(vec, 3.0) for vec in vectors]
    assert labels == ["A", "B"] * 4
    assert online.count == 2


def test_past_max_speakers_the_closest_is_taken() -> None:
    online = OnlineSpeakers(threshold=0.9, max_speakers=2)
    assert [online.assign(v) for v in np.eye(3)] == ["A", "B", "A"]
