"""A synthetic meeting through the real VAD, encoder and clustering: who spoke when."""

from __future__ import annotations

import numpy as np
import pytest

from asr_serve.audio.splitting import PieceSplitter
from asr_serve.config import SAMPLE_RATE, SpeakersConfig, SplittingConfig
from asr_serve.speakers.clips import cut_regions
from asr_serve.speakers.clustering import KnownSpeakers, cluster, name_speakers
from asr_serve.speakers.ge2e import GE2EEncoder
from asr_serve.speakers.labels import letter, letter_index, turns_of
from devtools.conversation import LINES, VOICES, Conversation, attributed_share, converse

CONFIG = SpeakersConfig()


@pytest.fixture(scope="module")
def meeting() -> Conversation:
    voices = VOICES[:3]
    return converse([(voices[i % 3], LINES[i]) for i in range(7)])


def diarize(
    encoder: GE2EEncoder,
    audio: np.ndarray,
    known: KnownSpeakers | None = None,
    num_speakers: int | None = None,
) -> list:
    regions = PieceSplitter(SplittingConfig()).speech_regions(audio)
    clips = cut_regions(regions, round(CONFIG.max_clip_s * SAMPLE_RATE))
    vectors = encoder.embed([audio[a:b] for a, b in clips])
    lengths = [b - a for a, b in clips]
    labels = cluster(
        vectors,
        lengths,
        threshold=CONFIG.threshold,
        min_length=round(CONFIG.min_clip_s * SAMPLE_RATE),
        max_speakers=CONFIG.max_speakers,
        num_speakers=num_speakers,
    )
    names = name_speakers(
        vectors, lengths, labels, known, min_known_similarity=CONFIG.min_known_similarity
    )
    return [(t.start, t.end, t.speaker) for t in turns_of(clips, [names[x] for x in labels])]


def test_three_voices_are_told_apart(encoder: GE2EEncoder, meeting: Conversation) -> None:
    turns = diarize(encoder, meeting.audio)
    assert {s for *_, s in turns} == {"A", "B", "C"}
    assert turns[0][2] == "A"  # letters in order of appearance
    assert attributed_share(meeting.turns, turns) >= 0.9
    # The baseline this beats: one speaker for everything.
    one = [(0.0, meeting.duration_s, "A")]
    assert attributed_share(meeting.turns, one) < 0.5


def test_a_count_hint_fixes_the_number(encoder: GE2EEncoder, meeting: Conversation) -> None:
    assert {s for *_, s in diarize(encoder, meeting.audio, num_speakers=2)} == {"A", "B"}


def test_known_speakers_name_their_clusters(encoder: GE2EEncoder, meeting: Conversation) -> None:
    """References of two of the three voices (other sentences): those two are named, the
    third is ``A``."""
    ann, bob = VOICES[0], VOICES[1]
    refs = encoder.embed([ann.say(LINES[12] + " " + LINES[13]), bob.say(LINES[14])])
    known = KnownSpeakers(("agent", "customer"), refs)
    turns = diarize(encoder, meeting.audio, known)
    named = [(a, b, {"agent": "ann", "customer": "bob", "A": "cat"}[s]) for a, b, s in turns]
    assert attributed_share(meeting.turns, named, by_name=True) >= 0.9


def test_one_clip_and_none() -> None:
    one = cluster(np.ones((1, 4)) / 2, [16_000], threshold=0.7, min_length=1, max_speakers=4)
    assert one.tolist() == [0]
    assert cluster(np.zeros((0, 4)), [], threshold=0.7, min_length=1, max_speakers=4).size == 0


def test_short_clips_join_the_closest_speaker() -> None:
    a, b = np.eye(4)[0], np.eye(4)[1]
    vectors = np.stack([a, b, a, 0.9 * b + 0.1 * a])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = cluster(
        vectors, [32_000, 32_000, 32_000, 100], threshold=0.7, min_length=1000, max_speakers=4
    )
    assert labels.tolist() == [0, 1, 0, 1]


def test_max_speakers_bounds_the_clusters() -> None:
    vectors = np.random.default_rng(0).standard_normal((6, 16))
    labels = cluster(vectors, [16_000] * 6, threshold=0.7, min_length=1, max_speakers=3)
    assert labels.max() + 1 == 3


def test_letters_and_their_indices() -> None:
    assert [letter(i) for i in (0, 1, 25, 26, 27)] == ["A", "B", "Z", "AA", "AB"]
    assert [letter_index(letter(i)) for i in range(800)] == list(range(800))
