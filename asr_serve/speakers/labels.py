"""Speaker labels, turns, and a transcript's segments attributed to the speakers in them.

A turn is a stretch of the file's time line one speaker holds (consecutive clips of one
speaker, merged). A transcript segment takes the speaker it overlaps most; one that spans a
change of speaker is split at its words when the engine gave word times, else it goes whole
to the speaker of most of its time. A segment inside no turn (speech the VAD missed) takes
the nearest turn's speaker.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

from asr_serve.config import SAMPLE_RATE
from asr_serve.engines.base import Segment


def letter(index: int) -> str:
    """``A`` … ``Z``, then ``AA``, ``AB`` …: OpenAI's labels for speakers it cannot name."""
    letters = string.ascii_uppercase
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = letters[rest] + label
    return label


def letter_index(label: str) -> int:
    """The index :func:`letter` writes as ``label`` (``A`` is 0): the integer speaker id of
    FunASR's sentence results."""
    index = 0
    for char in label:
        index = index * 26 + string.ascii_uppercase.index(char) + 1
    return index - 1


@dataclass(frozen=True, slots=True)
class Turn:
    """``[start, end)`` in seconds of the file, held by ``speaker``."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True, slots=True)
class SpeakerSegment:
    """A stretch of transcript and who said it: one ``diarized_json`` segment."""

    start: float
    end: float
    text: str
    speaker: str


def turns_of(clips: Sequence[tuple[int, int]], speakers: Sequence[str]) -> list[Turn]:
    """Consecutive clips (in samples, in time order) of one speaker merged into turns."""
    turns: list[Turn] = []
    for (start, end), speaker in zip(clips, speakers, strict=True):
        begin, finish = start / SAMPLE_RATE, end / SAMPLE_RATE
        if turns and turns[-1].speaker == speaker:
            turns[-1] = Turn(turns[-1].start, finish, speaker)
        else:
            turns.append(Turn(begin, finish, speaker))
    return turns


def speaker_at(start: float, end: float, turns: Sequence[Turn]) -> str | None:
    """The speaker holding most of ``[start, end]``; the nearest turn's if none overlaps."""
    if not turns:
        return None
    overlap: dict[str, float] = {}
    for turn in turns:
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
    if overlap:
        return max(overlap, key=lambda s: overlap[s])
    middle = (start + end) / 2
    nearest = min(turns, key=lambda t: max(t.start - middle, middle - t.end, 0.0))
    return nearest.speaker


def attribute(
    segments: Sequence[Segment], turns: Sequence[Turn], default: str
) -> list[SpeakerSegment]:
    """The transcript's segments with their speakers, split at changes where words allow."""
    out: list[SpeakerSegment] = []
    for segment in segments:
        words = segment.words or []
        speakers = {speaker_at(w.start, w.end, turns) for w in words}
        if len(speakers) <= 1 or not segment.text.strip():
            speaker = speaker_at(segment.start, segment.end, turns) or default
            out.append(SpeakerSegment(segment.start, segment.end, segment.text.strip(), speaker))
            continue
        run: list = []
        for word in words:
            speaker = speaker_at(word.start, word.end, turns) or default
            if run and run[0][1] != speaker:
                out.append(_joined(run))
                run = []
            run.append((word, speaker))
        out.append(_joined(run))
    return [s for s in out if s.text]


def _joined(run: list) -> SpeakerSegment:
    words = [w for w, _ in run]
    text = "".join(w.word for w in words).strip()
    return SpeakerSegment(words[0].start, words[-1].end, text, run[0][1])
