"""OpenAI's Realtime transcription protocol on the live session core.

The ``openai`` SDK's ``client.realtime.connect(model=..., extra_query={"intent":
"transcription"})`` works against it unmodified. The route (Serve ingress) authenticates and
accepts the WebSocket, then calls :func:`run_realtime_session`, which returns when the
session is over and the socket closed.

- ``?model=`` picks the model (default: the caller's); ``?intent=``, if given, must be
  ``transcription``. ``session.update`` (GA shape) and ``transcription_session.update``
  (the older beta shape) change the session, merged into it field by field; unsupported
  fields and values are refused by name (``error`` with ``param``), never ignored.
- Audio: ``input_audio_buffer.append`` with base64 PCM16 (24 kHz unless the session says
  another ``rate``) or G.711; ``commit`` and ``clear`` as OpenAI's.
- Turns: ``server_vad`` (default) cuts utterances at pauses; ``turn_detection: null`` leaves
  commits to the client. Partial results come as append-only ``delta`` events with server
  VAD only: in manual mode the client learns an item's id at its commit, as on OpenAI.
- A malformed or refused client event gets an ``error`` event naming it (``event_id``) and
  the session goes on.

Close codes:

======  ==========================================================================================
 code   when
======  ==========================================================================================
 1000   normal: the client closed (the server never closes a healthy, active session)
 1008    policy: ``?model=`` names no served model, or ``?intent=`` is not ``transcription``
         (an ``error`` event says which first); the route also uses it for a bad API key
 1009   a frame over the server's WebSocket frame limit (uvicorn closes it itself; uvicorn's
         default is 16 MiB, less than a base64 append of OpenAI's 15 MiB maximum)
 1011   internal error; the SDK may reconnect
 1013   try again later: the replica has its maximum of sessions (the route, at connect)
 4000   idle: no audio for ``idle_timeout_s``
 4001   the session has sent ``max_session_audio_s`` of audio
======  ==========================================================================================

Before a 4000 or 4001 the items already committed are finished and sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from starlette.websockets import WebSocket

from asr_serve.config import LiveConfig
from asr_serve.engines.base import TranscribeOptions
from asr_serve.errors import ASRServeError, InvalidAudioError, PayloadTooLargeError
from asr_serve.live.decode import Transcriber
from asr_serve.live.events import (
    Cleared,
    Committed,
    Completed,
    Failed,
    LiveEvent,
    Partial,
    SpeechStarted,
    SpeechStopped,
)
from asr_serve.live.metrics import LiveMetrics
from asr_serve.live.pcm import InputFormat
from asr_serve.live.protocols.openai_events import (
    AppendAudio,
    Audio,
    AudioInput,
    BetaSessionUpdate,
    BetaSessionUpdated,
    ClearAudio,
    ClearedEvent,
    ClientErrorDetail,
    ClientEventError,
    CommitAudio,
    CommittedEvent,
    DurationUsage,
    ErrorDetail,
    ErrorEvent,
    ServerEvent,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
    SpeechStartedEvent,
    SpeechStoppedEvent,
    Transcription,
    TranscriptionCompleted,
    TranscriptionDelta,
    TranscriptionFailed,
    TranscriptionSession,
    beta_session_object,
    merge,
    parse_client_event,
    session_object,
    validation_error,
)
from asr_serve.live.session import LiveSession, SessionAudioLimitError, SessionSettings

logger = logging.getLogger("ray.serve")

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_IDLE = 4000
CLOSE_AUDIO_LIMIT = 4001

_ENCODINGS = {"audio/pcm": "pcm16", "audio/pcmu": "pcmu", "audio/pcma": "pcma"}


async def run_realtime_session(
    websocket: WebSocket,
    *,
    transcriber: Transcriber,
    models: Sequence[str],
    default_model: str,
    config: LiveConfig,
    metrics: LiveMetrics,
) -> None:
    """Serve one accepted WebSocket until the client leaves or the session must end."""
    model = websocket.query_params.get("model", default_model)
    intent = websocket.query_params.get("intent", "transcription")
    refusal = None
    if intent != "transcription":
        refusal = ClientEventError(
            "invalid_intent",
            f"intent {intent!r} is not served here; this server only transcribes "
            "(intent=transcription)",
            param="intent",
        )
    elif model not in models:
        refusal = ClientEventError(
            "model_not_found",
            f"The model {model!r} does not exist; available: {', '.join(models)}",
            param="model",
        )
    if refusal is not None:
        await websocket.send_text(_error_event(refusal, None).model_dump_json())
        await websocket.close(CLOSE_POLICY, refusal.code)
        return
    connection = _Connection(websocket, transcriber, models, model, config, metrics)
    await connection.run()


def _error_event(exc: ASRServeError, event_id: str | None) -> ErrorEvent:
    return ErrorEvent(
        error=ClientErrorDetail(
            type=exc.error_type,
            code=exc.code,
            message=exc.message,
            param=exc.param,
            event_id=event_id,
        )
    )


class _Connection:
    """One client's session: reads its events in order, writes ours from a queue."""

    def __init__(
        self,
        websocket: WebSocket,
        transcriber: Transcriber,
        models: Sequence[str],
        model: str,
        config: LiveConfig,
        metrics: LiveMetrics,
    ) -> None:
        self._ws = websocket
        self._models = models
        self._model = model  # the connection's, for a session whose model is set to null
        self._config = config
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._state = TranscriptionSession(
            audio=Audio(input=AudioInput(transcription=Transcription(model=model)))
        )
        self._core = LiveSession(
            self._settings(self._state), config, transcriber, self._render, metrics
        )
        self._loop = asyncio.get_running_loop()
        self._last_audio = self._loop.time()

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        self._send(SessionCreated(session=session_object(self._state, self._core.id)))
        close: tuple[int, str] | None = (CLOSE_INTERNAL_ERROR, "internal error")
        try:
            close = await self._read()
        except Exception:
            logger.exception("realtime session %s failed", self._core.id)
        finally:
            # Committed items are finished for a client that is still there.
            await self._core.close(drain=close is not None)
            self._outbox.put_nowait(None)
            await writer
        if close is not None:
            with contextlib.suppress(Exception):  # it may have gone meanwhile
                await self._ws.close(*close)

    async def _read(self) -> tuple[int, str] | None:
        """Handle client events until the session must end: the close code and reason, or
        ``None`` when the client left."""
        while True:
            idle_s = self._last_audio + self._config.idle_timeout_s - self._loop.time()
            try:
                async with asyncio.timeout(max(idle_s, 0.0)):
                    message = await self._ws.receive()
            except TimeoutError:
                return CLOSE_IDLE, f"no audio for {self._config.idle_timeout_s:g} s"
            if message["type"] == "websocket.disconnect":
                return None
            if await self._handle(message.get("text")):
                return CLOSE_AUDIO_LIMIT, "session audio limit reached"

    async def _handle(self, text: str | None) -> bool:
        """Act on one text frame (``None``: a binary one); ``True`` if the session must end."""
        if text is None:
            self._error(
                ClientEventError(
                    "invalid_event",
                    "Binary frames are not part of this protocol; send audio as base64 in "
                    "input_audio_buffer.append events",
                ),
                None,
            )
            return False
        try:
            event = parse_client_event(text)
        except ClientEventError as exc:
            self._error(exc, exc.event_id)
            return False
        try:
            match event:
                case AppendAudio():
                    await self._append(event.audio)
                case CommitAudio():
                    await self._core.commit()
                case ClearAudio():
                    await self._core.clear()
                case SessionUpdate():
                    await self._update(event.session.model_dump(exclude_unset=True), beta=False)
                case BetaSessionUpdate():
                    await self._update(event.session.as_update(), beta=True)
        except ASRServeError as exc:
            self._error(exc, event.event_id)
            return isinstance(exc, SessionAudioLimitError)
        return False

    async def _append(self, audio: str) -> None:
        if len(audio) // 4 * 3 > self._config.max_append_bytes:
            raise PayloadTooLargeError(
                f"An append may carry at most {self._config.max_append_bytes} bytes of audio; "
                "send it in smaller events",
                param="audio",
            )
        try:
            data = base64.b64decode(audio, validate=True)
        except binascii.Error:
            raise InvalidAudioError("audio is not valid base64", param="audio") from None
        await self._core.append(data)
        self._last_audio = self._loop.time()

    async def _update(self, update: dict[str, Any], *, beta: bool) -> None:
        try:
            state = TranscriptionSession.model_validate(merge(self._state.model_dump(), update))
        except ValidationError as exc:  # a change that clashes with what the session has
            error = validation_error(exc, None)
            error.param = f"session.{error.param}"
            raise error from None
        model = state.audio.input.transcription.model
        if model is not None and model not in self._models:
            raise ClientEventError(
                "model_not_found",
                f"The model {model!r} does not exist; available: {', '.join(self._models)}",
                param="session.input_audio_transcription.model"
                if beta
                else "session.audio.input.transcription.model",
            )
        await self._core.update(self._settings(state))
        self._state = state
        if beta:
            self._send(BetaSessionUpdated(session=beta_session_object(state, self._core.id)))
        else:
            self._send(SessionUpdated(session=session_object(state, self._core.id)))

    def _settings(self, state: TranscriptionSession) -> SessionSettings:
        audio = state.audio.input
        detection = audio.turn_detection
        return SessionSettings(
            model=audio.transcription.model or self._model,
            input_format=InputFormat(
                encoding=_ENCODINGS[audio.format.type], rate=audio.format.rate or 8_000
            ),
            turn_detection=None if detection is None else detection.server_vad(),
            options=TranscribeOptions(
                language=audio.transcription.language, prompt=audio.transcription.prompt or None
            ),
            partials=detection is not None,
        )

    def _render(self, event: LiveEvent) -> None:
        """The core's events as OpenAI's."""
        match event:
            case SpeechStarted(item_id, start_ms):
                self._send(SpeechStartedEvent(audio_start_ms=start_ms, item_id=item_id))
            case SpeechStopped(item_id, end_ms):
                self._send(SpeechStoppedEvent(audio_end_ms=end_ms, item_id=item_id))
            case Committed(item_id, previous_item_id):
                self._send(CommittedEvent(item_id=item_id, previous_item_id=previous_item_id))
            case Cleared():
                self._send(ClearedEvent())
            case Partial(item_id, _, delta) if delta:
                self._send(TranscriptionDelta(item_id=item_id, delta=delta))
            case Completed(item_id, transcript, delta, start_ms, end_ms):
                if delta:
                    self._send(TranscriptionDelta(item_id=item_id, delta=delta))
                self._send(
                    TranscriptionCompleted(
                        item_id=item_id,
                        transcript=transcript,
                        usage=DurationUsage(seconds=(end_ms - start_ms) / 1000),
                    )
                )
            case Failed(item_id, error):
                self._send(
                    TranscriptionFailed(
                        item_id=item_id,
                        error=ErrorDetail(
                            type=error.error_type,
                            code=error.code,
                            message=error.message,
                            param=error.param,
                        ),
                    )
                )

    def _send(self, event: ServerEvent) -> None:
        self._outbox.put_nowait(event.model_dump_json())

    def _error(self, exc: ASRServeError, event_id: str | None) -> None:
        self._send(_error_event(exc, event_id))

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None:
            try:
                await self._ws.send_text(text)
            except Exception:  # the client is gone; the reader sees it and ends the session
                return
