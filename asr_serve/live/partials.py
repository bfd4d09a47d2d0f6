"""The partial-result policy: when a session asks for one, how many run, what is sent.

Neither model streams, so a partial result is the open utterance transcribed again, whole.
It is a preview, best effort at every step, and finals and files never wait for one:

1. **When** (:class:`SessionPartials`, one per session): after every ``partial_interval_s``
   of new audio in the open utterance, one at a time, not while the speaker pauses (the
   utterance may end any moment, and its final would wait behind the partial), only with
   partials on for the replica (``partials``) and the session. Its request is without
   timestamps (only its text is read; timestamps take slower engine paths) and is stale once
   the utterance has ended or grown by more than an interval.
2. **How many** (:class:`PartialScheduler`, one per ingress replica, shared by its sessions):
   finals go to the model at once; at most ``max_partials_in_flight`` partials run, one per
   session, the others wait in arrival order; one that waited ``partial_max_wait_s`` for its
   slot, or became stale meanwhile, is dropped and counted as shed.
3. **At the model**: the ASR replica takes a partial only behind every request waiting there
   (:class:`~asr_serve.engines.fair.FairQueue`) and drops it after
   ``partial_model_wait_s`` (the setting travels with the request, from
   :meth:`~asr_serve.deployments.calls.Downstream.live_transcribe`).
4. **What is sent** (:class:`StableText`): clients of append-only protocols (OpenAI's
   transcription deltas, FunASR's online text) cannot take text back, so only text two
   hypotheses in a row agree on, the last word of the newest one excepted, is sent, and only
   once, and only while it extends what was sent (once the model revises sent text, the rest
   waits for the final transcript, which replaces it). Text is compared in units: words, and
   single characters in scripts written without spaces (CJK: the characters Unicode gives an
   East Asian width of wide or full).
"""

from __future__ import annotations

import asyncio
import collections
import re
import time
import unicodedata

from asr_serve.config import SAMPLE_RATE, LiveConfig
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.live.metrics import LiveMetrics, ShedReason
from asr_serve.live.transcribe import Transcribe, TranscribeKind, TranscribeRequest


class SessionPartials:
    """Step 1 for one session: whether a partial is due, and whether its result still is."""

    def __init__(self, config: LiveConfig) -> None:
        self.enabled = config.partials
        #: Samples of new audio between two partials of an utterance.
        self.interval = round(config.partial_interval_s * SAMPLE_RATE)
        #: One of this session's partials is being transcribed.
        self.running = False

    def due(self, *, wanted: bool, pausing: bool, grown: int) -> bool:
        """A partial is due: the session ``wanted`` them, none is running, the speaker is not
        ``pausing``, and the utterance has ``grown`` by an interval since the last."""
        return (
            self.enabled and wanted and not self.running and not pausing and grown >= self.interval
        )

    def fresh(self, grown: int) -> bool:
        """A partial's audio is not stale yet: the utterance has ``grown`` by at most an
        interval since it was asked for."""
        return grown <= self.interval

    @staticmethod
    def options(options: TranscribeOptions) -> TranscribeOptions:
        """A partial's options: its text only, so no timestamps (a slower engine path)."""
        if not (options.word_timestamps or options.segment_timestamps):
            return options
        return options.model_copy(update={"word_timestamps": False, "segment_timestamps": False})


class PartialScheduler:
    """Step 2: the replica's :data:`~asr_serve.live.transcribe.Transcribe` for every
    session; call it with a request. Finals pass straight to ``transcribe``."""

    def __init__(self, transcribe: Transcribe, config: LiveConfig, metrics: LiveMetrics) -> None:
        self._transcribe = transcribe
        self._max_partials = config.max_partials_in_flight
        self._max_wait_s = config.partial_max_wait_s
        self._metrics = metrics
        self._partials_running = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sessions: set[str] = set()  # with a partial running or waiting

    @property
    def partials_running(self) -> int:
        return self._partials_running

    @property
    def partials_waiting(self) -> int:
        return sum(not f.done() for f in self._waiting)

    async def __call__(self, request: TranscribeRequest) -> EngineResult | None:
        started = time.monotonic()
        if request.kind is TranscribeKind.FINAL:
            result = await self._transcribe(request)
        else:
            result = await self._partial(request)
        if result is not None:
            self._metrics.transcribed(request.kind, time.monotonic() - started)
        return result

    async def _partial(self, request: TranscribeRequest) -> EngineResult | None:
        if request.session_id in self._sessions:
            self._metrics.partial_shed(ShedReason.DUPLICATE)
            return None
        self._sessions.add(request.session_id)
        try:
            if not await self._acquire():
                self._metrics.partial_shed(ShedReason.WAITED)
                return None
            try:
                if not request.still_wanted():
                    self._metrics.partial_shed(ShedReason.STALE)
                    return None
                result = await self._transcribe(request)
                if result is None:
                    self._metrics.partial_shed(ShedReason.MODEL_BUSY)
                return result
            finally:
                self._release()
        finally:
            self._sessions.discard(request.session_id)

    async def _acquire(self) -> bool:
        """A partial slot; ``False`` when none came within ``partial_max_wait_s``."""
        # A slot is handed straight to a waiter when freed, so free slots mean no waiters.
        if self._partials_running < self._max_partials:
            self._partials_running += 1
            return True
        granted = asyncio.get_running_loop().create_future()
        self._waiting.append(granted)
        try:
            async with asyncio.timeout(self._max_wait_s):
                await granted
        except BaseException as exc:  # the timeout, or the session went away
            if granted.done() and not granted.cancelled():
                self._release()  # handed over just as the wait ended: pass it on
            if isinstance(exc, TimeoutError):
                return False
            raise
        return True

    def _release(self) -> None:
        """Hand the slot to the longest-waiting partial still waiting, or free it."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._partials_running -= 1


#: A unit is a word with the whitespace before it; each CJK character is a unit of its own.
_UNITS = re.compile(r"\s*(?:\S)")


def units(text: str) -> list[str]:
    """``text`` cut into units that join back to it exactly."""
    out: list[str] = []
    for match in _UNITS.finditer(text):
        piece = match.group()
        char = piece[-1]
        if out and not piece[0].isspace() and not _wide(char) and not _wide(out[-1][-1]):
            out[-1] += piece  # continues the word before it
        else:
            out.append(piece)
    return out


#: Punctuation a model ends a hypothesis with because its audio ends there (CJK punctuation
#: is a unit of its own, so it never hides an agreeing character).
_CLOSING = ".,!?;:…"


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


class StableText:
    """One utterance's sent text; feed it hypotheses, get back what may be sent as a delta."""

    def __init__(self) -> None:
        #: Everything sent so far, in order: the deltas joined.
        self.sent = ""
        self._sent_units = 0
        self._last: list[str] = []

    def hypothesis(self, text: str) -> str:
        """The delta a new partial hypothesis makes stable ("" if none)."""
        new = units(text.strip())
        last = self._last
        if last:
            # Where its audio ended the model closed a sentence ("Please call Stella.");
            # the newer one goes on ("Please call Stella and"): they agree on the word.
            last = [*last[:-1], last[-1].rstrip(_CLOSING)]
        agreed = 0
        for a, b in zip(last, new[:-1], strict=False):
            if a != b:
                break
            agreed += 1
        self._last = new
        if agreed <= self._sent_units or "".join(new[: self._sent_units]) != self.sent:
            return ""  # nothing new, or the model revised what was sent: the final will tell
        delta = "".join(new[self._sent_units : agreed])
        self._sent_units = agreed
        self.sent += delta
        return delta

    def final(self, text: str) -> str | None:
        """The last delta before ``text`` is final: its rest when it extends what was sent,
        ``None`` when it diverges (the final text replaces the deltas)."""
        text = text.strip()
        if not text.startswith(self.sent):
            return None
        rest = text[len(self.sent) :]
        self.sent = text
        return rest
