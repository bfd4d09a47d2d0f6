"""Synthetic conversations with known speakers, and how much of one a diarization got right.

Voices are espeak-ng voices and variants at different pitches and speeds; a conversation is
their sentences in turn with pauses between, and its truth is who spoke when. The score is
DER-style without overlap: the share of the reference's speech time attributed to the
right speaker, under the best one-to-one mapping of hypothesis labels to speakers (or by
name, for known speakers). Missed speech and speech given to the wrong speaker count against
it; a hypothesis over silence does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asr_serve.config import SAMPLE_RATE
from devtools.speech import synthesize


@dataclass(frozen=True)
class Voice:
    name: str
    voice: str
    pitch: int
    speed: int

    def say(self, text: str) -> np.ndarray:
        """The sentence in this voice, leading and trailing silence trimmed."""
        audio = synthesize(text, voice=self.voice, pitch=self.pitch, speed=self.speed, lead_s=0)
        audible = np.flatnonzero(np.abs(audio) > 1e-3)
        return audio[audible[0] : audible[-1] + 1]


#: Four voices GE2E tells apart on espeak's speech: of 36 voice, variant and pitch
#: combinations, the four least alike (sentences of one voice 0.92-0.94 alike on average,
#: of two of these at most 0.70; many other pairs of espeak voices are 0.8-0.9 alike).
VOICES = (
    Voice("ann", "en-us+Annie", 70, 155),
    Voice("bob", "en-us+Andy", 50, 150),
    Voice("cat", "en-gb-scotland+f2", 70, 170),
    Voice("dan", "en-029+m3", 30, 135),
)

#: Sentences of an everyday meeting, spoken in turn.
LINES = (
    "Good morning, shall we start with the budget for next quarter?",
    "Yes. The numbers came in yesterday and they look better than expected.",
    "That is good news. How much did the travel costs go down?",
    "About twelve percent, mostly because the team met online more often.",
    "Can you send me the full report before the end of the day?",
    "Of course, I will put it in the shared folder this afternoon.",
    "We should also talk about hiring for the support team.",
    "I agree. Two people are leaving in March and we need to plan ahead.",
    "Let us open both positions next week then.",
    "Fine. I will write the job description tomorrow morning.",
    "What about the new office, is the move still planned for April?",
    "The landlord asked for another month, so it will probably be May.",
    "That works for me. Does anyone have anything else?",
    "Only that the printer on the second floor is broken again.",
    "I will call the technician after this meeting. Thanks, everyone.",
    "Thank you. See you all next Monday at the same time.",
)


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class Conversation:
    audio: np.ndarray  # 16 kHz mono float32
    #: Who spoke when: each sentence's audible span and its voice's name.
    turns: tuple[Turn, ...]

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def converse(
    lines: Sequence[tuple[Voice, str]], *, pause_s: float = 0.6, lead_s: float = 0.5
) -> Conversation:
    """The lines spoken in order, ``pause_s`` of silence between, ``lead_s`` around."""
    gap = np.zeros(round(pause_s * SAMPLE_RATE), dtype=np.float32)
    edge = np.zeros(round(lead_s * SAMPLE_RATE), dtype=np.float32)
    parts, turns, at = [edge], [], len(edge)
    for i, (voice, text) in enumerate(lines):
        speech = voice.say(text)
        turns.append(Turn(at / SAMPLE_RATE, (at + len(speech)) / SAMPLE_RATE, voice.name))
        parts += [speech, gap if i < len(lines) - 1 else edge]
        at += len(speech) + len(parts[-1])
    return Conversation(np.concatenate(parts), tuple(turns))


def meeting(voices: Sequence[Voice], minutes: float, *, pause_s: float = 0.6) -> Conversation:
    """The voices taking turns through :data:`LINES` (round and round) for about ``minutes``."""
    lines, spoken = [], 0.0
    i = 0
    while spoken < minutes * 60:
        voice = voices[i % len(voices)]
        text = LINES[i % len(LINES)]
        lines.append((voice, text))
        spoken += len(voice.say(text)) / SAMPLE_RATE + pause_s
        i += 1
    return converse(lines, pause_s=pause_s)


_STEP = 0.01


def _frames(turns: Sequence[tuple[float, float, str]], count: int) -> list[str | None]:
    frames: list[str | None] = [None] * count
    for start, end, speaker in turns:
        for k in range(max(0, round(start / _STEP)), min(count, round(end / _STEP))):
            frames[k] = speaker
    return frames


def attributed_share(
    reference: Sequence[Turn],
    hypothesis: Sequence[tuple[float, float, str]],
    *,
    by_name: bool = False,
) -> float:
    """Share of the reference's speech time given to the right speaker (0 to 1).

    ``by_name``: hypothesis labels are speakers' names (known speakers); otherwise each
    label is mapped to the speaker it shares most time with, one to one.
    """
    from scipy.optimize import linear_sum_assignment

    end = max([t.end for t in reference] + [h[1] for h in hypothesis] + [0.0])
    count = round(end / _STEP) + 1
    truth = _frames([(t.start, t.end, t.speaker) for t in reference], count)
    guess = _frames(hypothesis, count)
    speech = sum(1 for t in truth if t is not None)
    if by_name:
        return (
            sum(1 for t, g in zip(truth, guess, strict=True) if t is not None and t == g) / speech
        )
    names = sorted({t for t in truth if t is not None})
    labels = sorted({g for g in guess if g is not None})
    if not labels:
        return 0.0
    shared = np.zeros((len(names), len(labels)))
    for t, g in zip(truth, guess, strict=True):
        if t is not None and g is not None:
            shared[names.index(t), labels.index(g)] += 1
    rows, cols = linear_sum_assignment(-shared)
    return float(shared[rows, cols].sum() / speech)


def utterances_right(
    reference: Sequence[Turn], hypothesis: Sequence[tuple[float, float, str]]
) -> float:
    """Share of the reference's utterances given to the right speaker (0 to 1).

    Each utterance takes the label that covers most of its time (an utterance no label
    covers is wrong), and labels are mapped one to one to speakers, the mapping that gets
    most utterances right. By time, not by position: a live session may cut one sentence
    into two items at a pause inside it, which is no error of who spoke.
    """
    from scipy.optimize import linear_sum_assignment

    taken: list[str | None] = []
    for turn in reference:
        cover: dict[str, float] = {}
        for start, end, label in hypothesis:
            shared = min(end, turn.end) - max(start, turn.start)
            if shared > 0:
                cover[label] = cover.get(label, 0.0) + shared
        taken.append(max(cover, key=lambda label: cover[label]) if cover else None)
    names = sorted({t.speaker for t in reference})
    labels = sorted({label for label in taken if label is not None})
    if not labels:
        return 0.0
    counts = np.zeros((len(names), len(labels)))
    for turn, label in zip(reference, taken, strict=True):
        if label is not None:
            counts[names.index(turn.speaker), labels.index(label)] += 1
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(reference))
