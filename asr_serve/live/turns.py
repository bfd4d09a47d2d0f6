"""Where utterances start and end in a live stream, from per-frame speech probabilities.

Pure logic over :class:`asr_serve.live.vad.VADStream` output, so it is tested with made-up
probabilities. Positions are samples on the session's 16 kHz clock. With ``ServerVAD``
settings it finds turns as OpenAI's ``server_vad`` does: an utterance starts at the first
frame at or over ``threshold`` (minus ``prefix_padding_ms``) and ends once the speech has
stayed below ``threshold - 0.15`` for ``silence_duration_ms`` (that silence included).
Without them (manual turns) the client commits, and an utterance is everything since the
last commit. Either way an utterance that reaches the maximum length is cut at its quietest
frame in its second half, so it is never split mid-word when a pause exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr_serve.config import SAMPLE_RATE, ServerVAD
from asr_serve.live.vad import FRAME

#: silero's hysteresis: once in speech, a frame is silence only this far under the threshold.
_HYSTERESIS = 0.15
#: Frames averaged when looking for the quietest point to cut at (~100 ms): a real pause
#: beats a single quiet frame inside a word.
_CUT_SMOOTHING = 3


@dataclass(frozen=True, slots=True)
class Start:
    """Speech began; the utterance starts at ``at`` (prefix padding included)."""

    at: int


@dataclass(frozen=True, slots=True)
class Stop:
    """Silence lasted long enough; the utterance ends at ``at`` (that silence included)."""

    at: int


@dataclass(frozen=True, slots=True)
class Cut:
    """The open utterance reached the maximum length: it ends at ``at``, the next begins there."""

    at: int


@dataclass(frozen=True, slots=True)
class Pause:
    """Within an utterance the speaker went silent at ``at``; it ends here unless speech
    resumes (then :class:`Resume`) within ``silence_duration_ms``."""

    at: int


@dataclass(frozen=True, slots=True)
class Resume:
    """Speech came back before the pause ended the utterance."""


Turn = Start | Stop | Cut | Pause | Resume


def ms_to_samples(ms: float) -> int:
    return round(ms * SAMPLE_RATE / 1000)


class TurnDetector:
    """One session's turn state; ``push`` the probabilities of each new run of frames."""

    def __init__(self, vad: ServerVAD | None, max_samples: int) -> None:
        self.vad = vad
        self.max_samples = max_samples
        self._frames = 0  # frames seen, so the next frame is number ``_frames``
        self._floor = 0  # nothing before this may go into an utterance (committed or cleared)
        self._start: int | None = None  # start of the open utterance (server VAD)
        self._silence_from: int | None = None
        self._probs: list[float] = []  # of frames from ``_probs_from`` on, within the utterance
        self._probs_from = 0

    @property
    def utterance_start(self) -> int | None:
        """Start of the open utterance; with manual turns it is open from the last commit."""
        return self._floor if self.vad is None else self._start

    @property
    def keep_from(self) -> int:
        """The earliest sample the detector may still put into an utterance."""
        start = self.utterance_start
        if start is not None:
            return start
        assert self.vad is not None
        return max(self._floor, self._frames * FRAME - ms_to_samples(self.vad.prefix_padding_ms))

    def push(self, probs: np.ndarray) -> list[Turn]:
        turns: list[Turn] = []
        for p in probs.tolist():
            frame = self._frames
            self._frames += 1
            if self.vad is not None:
                turns.extend(self._server_vad(frame, p))
            if self.utterance_start is not None:
                if not self._probs:
                    self._probs_from = frame
                self._probs.append(p)
                turns.extend(self._cut_if_too_long())
        return turns

    def reset(self, at: int) -> None:
        """A commit or clear at sample ``at``: no utterance is open, earlier audio is gone."""
        self._floor = at
        self._start = None
        self._silence_from = None
        self._probs = []

    def configure(self, vad: ServerVAD | None, open_from: int | None) -> None:
        """New settings; ``open_from`` is the start of an utterance that stays open, if any."""
        keep_from = self.keep_from
        self.vad = vad
        self._silence_from = None
        if open_from is None:
            self.reset(keep_from)
        elif vad is None:
            self._floor = open_from
        else:
            self._start = open_from

    def _server_vad(self, frame: int, p: float) -> list[Turn]:
        assert self.vad is not None
        if self._start is None:
            if p < self.vad.threshold:
                return []
            pad = ms_to_samples(self.vad.prefix_padding_ms)
            self._start = max(self._floor, frame * FRAME - pad)
            return [Start(self._start)]
        turns: list[Turn] = []
        if p >= self.vad.threshold:
            if self._silence_from is not None:
                turns.append(Resume())
            self._silence_from = None
        elif p < self.vad.threshold - _HYSTERESIS and self._silence_from is None:
            self._silence_from = frame * FRAME
            turns.append(Pause(self._silence_from))
        end = (frame + 1) * FRAME
        if self._silence_from is not None and end - self._silence_from >= ms_to_samples(
            self.vad.silence_duration_ms
        ):
            self.reset(end)
            return [*turns, Stop(end)]
        return turns

    def _cut_if_too_long(self) -> list[Turn]:
        start = self.utterance_start
        assert start is not None
        if self._frames * FRAME - start < self.max_samples:
            return []
        probs = np.asarray(self._probs)
        smoothed = np.convolve(probs, np.ones(_CUT_SMOOTHING) / _CUT_SMOOTHING, mode="same")
        centres = (np.arange(len(probs)) + self._probs_from) * FRAME + FRAME // 2
        late = np.flatnonzero(centres >= start + self.max_samples // 2)
        # The quietest frame, the latest of equals: the committed part is as long as it can be.
        best = late[len(late) - 1 - int(np.argmin(smoothed[late][::-1]))]
        at = int(centres[best])
        self._probs = self._probs[best + 1 :]
        self._probs_from += best + 1
        if self.vad is None:
            self._floor = at
        else:
            self._start = at
        return [Cut(at)]
