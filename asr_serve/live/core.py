"""One live transcription session, in no protocol's terms: audio in, utterances and text out.

A protocol adapter feeds it the client's audio and commands (``append``, ``commit``,
``clear``, ``update``) one at a time and renders the :mod:`asr_serve.live.events` it emits.
The session owns the audio clock (16 kHz samples since it started), the open utterance and
its audio, turn detection (server VAD, or the client's commits), item ids and their
chaining, partial results and the limits. Each appended chunk is converted and run through
the VAD on a worker thread (``asyncio.to_thread``), so the event loop only moves arrays;
a lock keeps one session's chunks in order.

Utterances are transcribed through the injected :data:`asr_serve.live.transcribe.Transcribe`.
A committed utterance's final transcription starts at once; results are emitted in commit
order, and every committed item ends in ``Completed`` or ``Failed`` (a transcription past
``final_timeout_s`` fails, and so does one the model's queue refuses: finals are admitted
in the session's client's share, as a file's pieces are). What a session may send is
bounded by its budget (:mod:`asr_serve.live.budget`). While an utterance is open it is
transcribed again for partial results, and the text that became stable is emitted as a
delta, as the partial policy says (:mod:`asr_serve.live.partials`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from asr_serve.config import SAMPLE_RATE, LiveConfig, ServerVAD
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.errors import (
    ASRServeError,
    DeadlineExceededError,
    InvalidRequestError,
)
from asr_serve.live.budget import NO_CLIENT, AudioBudget, LiveClient, SessionBudget
from asr_serve.live.buffer import SampleBuffer
from asr_serve.live.events import (
    Cleared,
    Committed,
    Completed,
    Failed,
    Partial,
    Sink,
    SpeechStarted,
    SpeechStopped,
)
from asr_serve.live.metrics import LiveMetrics, StageTotals
from asr_serve.live.partials import SessionPartials, StableText
from asr_serve.live.pcm import InputFormat, PCMDecoder
from asr_serve.live.speakers import SessionSpeakers
from asr_serve.live.transcribe import Transcribe, TranscribeKind, TranscribeRequest
from asr_serve.live.turns import Cut, Pause, Resume, Start, Stop, Turn, TurnDetector, ms_to_samples
from asr_serve.live.vad import VADStream
from asr_serve.timing import SEND, SILENCE, TOTAL, Timings, collecting
from asr_serve.untrusted import for_log

logger = logging.getLogger("ray.serve")


class CommitEmptyError(InvalidRequestError):
    """A commit with too little audio (OpenAI's ``input_audio_buffer_commit_empty``)."""

    code = "input_audio_buffer_commit_empty"


#: A session logs at most one failed partial in this many seconds (a client can make one
#: fail every ``partial_interval_s`` of audio); the next line counts those left out.
PARTIAL_FAILURE_LOG_INTERVAL_S = 10.0


class SessionSettings(BaseModel):
    """What a client chooses for its session; it may change them at any time."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    model: str
    input_format: InputFormat = Field(default_factory=InputFormat)
    #: ``None``: the client commits each utterance itself.
    turn_detection: ServerVAD | None = Field(default_factory=ServerVAD)
    options: TranscribeOptions = Field(default_factory=TranscribeOptions)
    #: Partial results for the open utterance (if the replica's ``LiveConfig`` allows them).
    partials: bool = True
    #: Label each utterance with its speaker (if the replica has the Speakers deployment).
    speakers: bool = False


@dataclass(eq=False)
class _Utterance:
    item_id: str
    start: int
    #: ``SpeechStarted`` was emitted, so ``SpeechStopped`` must follow.
    announced: bool
    text: StableText = field(default_factory=StableText)
    #: Its length in samples when its last partial was requested.
    partial_at: int = 0


def _ms(samples: int) -> int:
    return round(samples * 1000 / SAMPLE_RATE)


class LiveSession:
    """The core of one session; not thread-safe: call it from its event loop only."""

    def __init__(
        self,
        settings: SessionSettings,
        config: LiveConfig,
        transcribe: Transcribe,
        emit: Sink,
        metrics: LiveMetrics,
        *,
        protocol: str,
        audio_budget: AudioBudget | None = None,
        speakers: SessionSpeakers | None = None,
        client: LiveClient = NO_CLIENT,
    ) -> None:
        self.id = f"sess_{secrets.token_hex(10)}"
        self.client = client.id
        #: Its pace and finals in flight, and its client's audio a minute.
        self._share = SessionBudget(config, client.take_audio)
        #: The adapter's name; only a label on the session's metrics.
        self.protocol = protocol
        self.settings = settings
        self.config = config
        self._transcribe = transcribe
        self._speakers = speakers
        self._emit = emit
        self._metrics = metrics
        self._decoder = PCMDecoder(settings.input_format)
        self._vad = VADStream()
        self._turns = TurnDetector(
            settings.turn_detection, round(config.max_utterance_s * SAMPLE_RATE)
        )
        self._buffer = SampleBuffer()
        self._utterance: _Utterance | None = None
        self._previous_item: str | None = None
        self._received_s = 0.0
        self._budget = audio_budget or AudioBudget(config.max_session_audio_s)
        self._lock = asyncio.Lock()
        self._last_final: asyncio.Task[None] | None = None
        self._partials = SessionPartials(config)
        self._partial_task: asyncio.Task[None] | None = None
        #: When the speaker went silent within the open utterance (server VAD): no new
        #: partials meanwhile, and the wait for the silence that ends it starts there.
        self._paused_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._opened_at = time.monotonic()
        #: Items committed and items failed, and where the finals' time went, for the
        #: session's log line.
        self._items = self._failed = 0
        self._final_stages = StageTotals()
        #: When a failed partial was last logged, and how many failed since unlogged.
        self._partial_failure_logged_at = -PARTIAL_FAILURE_LOG_INTERVAL_S
        self._partial_failures_unlogged = 0
        metrics.session_opened(protocol)

    async def append(self, data: bytes) -> None:
        """Take a chunk of the client's audio, in the session's input format.

        Raises ``InvalidAudioError`` for bytes that are not whole samples (nothing is taken),
        ``SessionAudioLimitError`` once the connection's audio budget is spent, and
        ``RateLimitError`` past the session's share (both :mod:`asr_serve.live.budget`;
        nothing is taken).
        """
        seconds = len(data) / self.settings.input_format.bytes_per_second
        self._budget.check(seconds)
        self._share.take(seconds)
        async with self._lock:
            samples, turns = await asyncio.to_thread(self._convert, data)
            self._received_s += seconds
            self._budget.take(seconds)
            self._take(samples, turns)

    async def commit(self) -> None:
        """Close the open utterance now and transcribe it (``CommitEmptyError`` if too short)."""
        async with self._lock:
            # The resampler's last few ms belong to the utterance the client ends here.
            self._take(*await asyncio.to_thread(self._flush))
            utterance = self._utterance
            have = 0 if utterance is None else self._buffer.end - utterance.start
            if utterance is None or have < ms_to_samples(self.config.min_commit_ms):
                raise CommitEmptyError(
                    "Error committing input audio buffer: buffer too small. Expected at least "
                    f"{self.config.min_commit_ms}ms of audio, but buffer only has "
                    f"{_ms(have)}ms of audio."
                )
            self._turns.reset(self._buffer.end)
            self._close_utterance(self._buffer.end)

    async def clear(self) -> None:
        """Drop the audio not yet committed, the open utterance's included."""
        async with self._lock:
            samples, _ = await asyncio.to_thread(self._flush)
            self._buffer.append(samples)  # it still counts on the clock
            dropped = self._utterance
            self._utterance = None
            self._turns.reset(self._buffer.end)
            self._buffer.drop_before(self._buffer.end)
            self._emit(Cleared(None if dropped is None else dropped.item_id))

    async def update(self, settings: SessionSettings) -> None:
        """Apply new settings; audio already taken keeps the format it came in."""
        async with self._lock:
            if settings.input_format != self.settings.input_format:
                self._take(*await asyncio.to_thread(self._flush))
                self._decoder = PCMDecoder(settings.input_format)
            if settings.turn_detection != self.settings.turn_detection:
                utterance = self._utterance
                self._turns.configure(
                    settings.turn_detection, None if utterance is None else utterance.start
                )
                if settings.turn_detection is not None and utterance and not utterance.announced:
                    # Audio the client had not committed yet is now an utterance in progress.
                    utterance.announced = True
                    self._emit(SpeechStarted(utterance.item_id, _ms(utterance.start)))
            self.settings = settings

    async def close(self, *, drain: bool) -> None:
        """End the session: with ``drain``, after every committed item has ended."""
        if self._closed:
            return
        self._closed = True
        self._utterance = None  # no more partials; a late one is dropped
        if drain and self._last_final is not None:
            await asyncio.wait([self._last_final])
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        self._metrics.session_closed(self.protocol)
        logger.info(
            "live session %s (%s, %s) ended after %.1f s: audio_s=%.1f items=%d failed=%d%s",
            self.id,
            self.protocol,
            self.settings.model,
            time.monotonic() - self._opened_at,
            self._received_s,
            self._items,
            self._failed,
            f" final_ms_mean/max: {self._final_stages.summary()}"
            if self._final_stages.stages
            else "",
        )

    # Worker thread: conversion, VAD and turn detection (state only these methods touch).

    def _convert(self, data: bytes) -> tuple[np.ndarray, list[Turn]]:
        return self._detect(self._decoder.decode(data))

    def _flush(self) -> tuple[np.ndarray, list[Turn]]:
        return self._detect(self._decoder.flush())

    def _detect(self, samples: np.ndarray) -> tuple[np.ndarray, list[Turn]]:
        return samples, self._turns.push(self._vad.feed(samples))

    # Event loop: the buffer, utterances, events, transcriptions.

    def _take(self, samples: np.ndarray, turns: list[Turn]) -> None:
        self._buffer.append(samples)
        if self.settings.turn_detection is None and self._utterance is None and len(samples):
            self._open_utterance(self._turns.keep_from)
        for turn in turns:
            match turn:
                case Start(at):
                    self._open_utterance(at)
                case Stop(at):
                    self._close_utterance(at)
                case Cut(at):
                    self._close_utterance(at)
                    self._open_utterance(at)
                case Pause():
                    self._paused_at = time.perf_counter()
                case Resume():
                    self._paused_at = None
        self._buffer.drop_before(self._turns.keep_from)
        self._request_partial()

    def _open_utterance(self, start: int) -> None:
        self._paused_at = None
        vad = self.settings.turn_detection
        self._utterance = _Utterance(f"item_{secrets.token_hex(10)}", start, vad is not None)
        if vad is not None:
            # The first partial comes after an interval of speech, not of the padding.
            self._utterance.partial_at = ms_to_samples(vad.prefix_padding_ms)
            self._emit(SpeechStarted(self._utterance.item_id, _ms(start)))

    def _close_utterance(self, end: int) -> None:
        utterance = self._utterance
        assert utterance is not None
        closing = Timings()
        silence_s = 0.0 if self._paused_at is None else closing.started - self._paused_at
        self._utterance = None
        self._paused_at = None
        if self._partial_task is not None:
            # Its result could only be stale now; if it still waits for the model, it goes.
            self._partial_task.cancel()
        if utterance.announced:
            self._emit(SpeechStopped(utterance.item_id, _ms(end)))
        audio = self._buffer.slice(utterance.start, end)
        self._emit(
            Committed(utterance.item_id, self._previous_item, _ms(utterance.start), _ms(end))
        )
        self._previous_item = utterance.item_id
        self._items += 1
        self._metrics.utterance_committed(self.protocol, len(audio) / SAMPLE_RATE)
        self._share.final_started()
        self._last_final = self._spawn(
            self._finish(
                utterance, audio, (utterance.start, end), self._last_final, closing, silence_s
            )
        )

    async def _finish(
        self,
        utterance: _Utterance,
        audio: np.ndarray,
        span: tuple[int, int],
        previous: asyncio.Task[None] | None,
        timings: Timings,
        silence_s: float,
    ) -> None:
        """Transcribe a committed utterance; emit its outcome after the previous item's.

        ``timings`` started when the utterance closed, ``silence_s`` after its speech ended;
        a completed final's stages go to the metrics and the session's log line
        (:meth:`final_stages`).
        """
        outcome: EngineResult | ASRServeError
        speakers = self._speakers if self.settings.speakers else None
        embedding = asyncio.ensure_future(speakers.embed(audio)) if speakers else None
        try:
            with collecting(timings):
                async with asyncio.timeout(self.config.final_timeout_s):
                    outcome = await self._request(audio, TranscribeKind.FINAL, lambda: True)
        except ASRServeError as exc:
            outcome = exc
        except TimeoutError:
            outcome = DeadlineExceededError(
                f"transcription took longer than {self.config.final_timeout_s:g} s"
            )
        except Exception:
            logger.exception("live session %s: final transcription failed", self.id)
            outcome = ASRServeError("transcription failed")
        finally:
            self._share.final_ended()
        returned = time.perf_counter()
        vector = await embedding if embedding is not None else None
        if previous is not None:
            await asyncio.wait([previous])
        if isinstance(outcome, ASRServeError):
            self._failed += 1
            self._metrics.item_failed(self.protocol, outcome.code)
            self._emit(Failed(utterance.item_id, outcome))
            return
        transcript = outcome.text.strip()
        self._emit(
            Completed(
                utterance.item_id,
                transcript,
                utterance.text.final(transcript),
                _ms(span[0]),
                _ms(span[1]),
                outcome,
                speaker=speakers.label(vector, len(audio)) if speakers else None,
            )
        )
        timings.add(SEND, time.perf_counter() - returned)
        stages = self.final_stages(timings, silence_s)
        self._metrics.final_stages(stages)
        self._final_stages.add(stages)

    @staticmethod
    def final_stages(timings: Timings, silence_s: float) -> dict[str, float]:
        """A final's stages, seconds each, from the end of its speech to its transcript sent:
        ``silence`` (server VAD: the speaker silent until the silence was long enough to end
        the utterance; 0 for a commit), the model call's ``queue``, ``batch``, ``engine`` and
        ``transport`` (:mod:`asr_serve.timing`), ``send`` (the transcript back here until
        sent, behind the items committed before it and its speaker's embedding), and
        ``total``."""
        return {SILENCE: silence_s, **timings.stages, TOTAL: silence_s + timings.elapsed()}

    def _request_partial(self) -> None:
        """Transcribe the open utterance again if a partial is due (the partial policy)."""
        utterance = self._utterance
        if utterance is None:
            return
        length = self._buffer.end - utterance.start
        if not self._partials.due(
            wanted=self.settings.partials,
            pausing=self._paused_at is not None,
            grown=length - utterance.partial_at,
        ):
            return
        utterance.partial_at = length

        def still_wanted() -> bool:
            grown = self._buffer.end - utterance.start - length
            return self._utterance is utterance and self._partials.fresh(grown)

        audio = self._buffer.slice(utterance.start, self._buffer.end)
        self._partials.running = True
        self._partial_task = self._spawn(self._partial(utterance, audio, still_wanted))

    async def _partial(
        self, utterance: _Utterance, audio: np.ndarray, still_wanted: Callable[[], bool]
    ) -> None:
        try:
            result = await self._request(audio, TranscribeKind.PARTIAL, still_wanted)
        except Exception as exc:
            # A partial is a preview: losing one costs nothing the final will not bring.
            self._partial_failed(exc)
            result = None
        finally:
            self._partials.running = False
            self._partial_task = None
        if result is not None and self._utterance is utterance:
            text = result.text.strip()
            delta = utterance.text.hypothesis(text)
            self._emit(Partial(utterance.item_id, text, delta, _ms(utterance.start)))
        self._request_partial()

    def _partial_failed(self, exc: Exception) -> None:
        """One line, no traceback, at most one per ``PARTIAL_FAILURE_LOG_INTERVAL_S``: the
        final of the same audio reports what matters (its item fails, and our own failure
        is logged with its traceback where it happened). A client's mistake (a language the
        model lacks) is INFO."""
        now = time.monotonic()
        if now - self._partial_failure_logged_at < PARTIAL_FAILURE_LOG_INTERVAL_S:
            self._partial_failures_unlogged += 1
            return
        unlogged, self._partial_failures_unlogged = self._partial_failures_unlogged, 0
        self._partial_failure_logged_at = now
        reason = exc.message if isinstance(exc, ASRServeError) else repr(exc)
        mistake = isinstance(exc, ASRServeError) and exc.status_code < 500
        logger.log(
            logging.INFO if mistake else logging.WARNING,
            "live session %s: partial failed: %s%s",
            self.id,
            for_log(reason),
            f" ({unlogged} more not logged)" if unlogged else "",
        )

    async def _request(
        self, audio: np.ndarray, kind: TranscribeKind, still_wanted: Callable[[], bool]
    ) -> EngineResult | None:
        options = self.settings.options
        if kind is TranscribeKind.PARTIAL:
            options = SessionPartials.options(options)
        request = TranscribeRequest(
            self.id, self.settings.model, audio, options, kind, still_wanted, self.client
        )
        result = await self._transcribe(request)
        if result is None and kind is TranscribeKind.FINAL:
            raise ASRServeError("a final transcription was dropped")
        return result

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
