"""Turns put on a transcript: segments take their speaker, split at words on a change."""

from __future__ import annotations

from asr_serve.engines.base import Segment, Word
from asr_serve.speakers.labels import Turn, attribute, speaker_at, turns_of

TURNS = [Turn(0.0, 2.0, "A"), Turn(2.5, 5.0, "B")]


def test_consecutive_clips_of_one_speaker_merge() -> None:
    turns = turns_of([(0, 16_000), (16_000, 32_000), (40_000, 48_000)], ["A", "A", "B"])
    assert turns == [Turn(0.0, 2.0, "A"), Turn(2.5, 3.0, "B")]


def test_most_overlap_wins_and_gaps_take_the_nearest() -> None:
    assert speaker_at(1.8, 3.0, TURNS) == "B"  # 0.2 s of A, 0.5 s of B
    assert speaker_at(1.0, 2.6, TURNS) == "A"
    assert speaker_at(6.0, 7.0, TURNS) == "B"
    assert speaker_at(0.0, 1.0, []) is None


def test_a_segment_over_a_change_splits_at_its_words() -> None:
    words = [
        Word(start=0.1, end=0.9, word=" Hello"),
        Word(start=1.0, end=1.8, word=" there."),
        Word(start=2.6, end=3.2, word=" Hi"),
        Word(start=3.3, end=4.0, word=" back."),
    ]
    segment = Segment(id=0, start=0.0, end=4.0, text=" Hello there. Hi back.", words=words)
    out = attribute([segment], TURNS, "A")
    assert [(s.speaker, s.text, s.start, s.end) for s in out] == [
        ("A", "Hello there.", 0.1, 1.8),
        ("B", "Hi back.", 2.6, 4.0),
    ]


def test_a_segment_without_words_goes_whole() -> None:
    segment = Segment(id=0, start=1.5, end=4.5, text=" all of it ")
    assert [(s.speaker, s.text) for s in attribute([segment], TURNS, "A")] == [("B", "all of it")]
    assert attribute([Segment(id=0, start=0, end=1, text=" ")], TURNS, "A") == []
