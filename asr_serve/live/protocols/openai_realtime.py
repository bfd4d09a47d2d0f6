"""OpenAI's Realtime transcription protocol on the live session core.

The ``openai`` SDK's ``client.realtime.connect(model=..., extra_query={"intent":
"transcription"})`` works against it unmodified. The route (Serve ingress) authenticates and
accepts the WebSocket, then runs an :class:`OpenAIRealtimeConnection` on it, until the
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

Close codes are every door's (:mod:`asr_serve.live.protocols.connection`); 1008 also
answers ``?intent=`` other than ``transcription`` (an ``error`` event says which first).
A frame past uvicorn's 16 MiB limit is closed with 1009: less than a base64 append of
OpenAI's 15 MiB maximum.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import ValidationError
from starlette.websockets import WebSocket

from asr_serve.engines.base import TranscribeOptions
from asr_serve.errors import ASRServeError, InvalidAudioError, PayloadTooLargeError
from asr_serve.live.core import LiveSession, SessionSettings
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
from asr_serve.live.pcm import InputFormat
from asr_serve.live.protocols.connection import LiveConnection, LiveContext, check_length
from asr_serve.live.protocols.openai_realtime_messages import (
    AppendAudio,
    Audio,
    AudioInput,
    AudioTranscription,
    BetaSessionUpdate,
    BetaSessionUpdated,
    ClearAudio,
    ClearedEvent,
    ClientErrorDetail,
    ClientEventError,
    CommitAudio,
    CommittedEvent,
    DetectedLanguage,
    DurationUsage,
    ErrorDetail,
    ErrorEvent,
    ServerEvent,
    SessionCreated,
    SessionUpdate,
    SessionUpdated,
    SpeechStartedEvent,
    SpeechStoppedEvent,
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
from asr_serve.untrusted import clip

#: Subprotocols to accept with: OpenAI's browser clients offer ``realtime`` beside their key.
SUBPROTOCOLS = ("realtime",)

_ENCODINGS = {"audio/pcm": "pcm16", "audio/pcmu": "pcmu", "audio/pcma": "pcma"}


class OpenAIRealtimeConnection(LiveConnection):
    """One client's session: its events in order, ours rendered from the core's."""

    protocol = "openai_realtime"
    subprotocols = SUBPROTOCOLS

    def __init__(
        self,
        websocket: WebSocket,
        context: LiveContext,
    ) -> None:
        super().__init__(websocket, context)
        self._state = TranscriptionSession()
        self._core: LiveSession | None = None
        #: The client event being handled, echoed in the errors it causes.
        self._event_id: str | None = None

    async def open(self) -> None:
        intent = self.websocket.query_params.get("intent", "transcription")
        if intent != "transcription":
            raise ClientEventError(
                "invalid_intent",
                f"intent {intent!r} is not served here; this server only transcribes "
                "(intent=transcription)",
                param="intent",
            )
        self._model = self.requested_model()
        self._state = TranscriptionSession(
            audio=Audio(input=AudioInput(transcription=AudioTranscription(model=self._model)))
        )
        self._core = self.new_session(self._settings(self._state), self._render)
        self._send(SessionCreated(session=session_object(self._state, self._core.id)))

    async def end(self, *, drain: bool) -> None:
        if self._core is not None:
            await self._core.close(drain=drain)

    async def on_bytes(self, data: bytes) -> None:
        self._event_id = None
        raise ClientEventError(
            "invalid_event",
            "Binary frames are not part of this protocol; send audio as base64 in "
            "input_audio_buffer.append events",
        )

    async def on_text(self, text: str) -> None:
        self._event_id = None
        event = parse_client_event(text, self.config.max_id_chars)
        self._event_id = event.event_id
        match event:
            case AppendAudio():
                await self._append(event.audio)
            case CommitAudio():
                await self._session.commit()
            case ClearAudio():
                await self._session.clear()
            case SessionUpdate():
                await self._update(event.session.model_dump(exclude_unset=True), beta=False)
            case BetaSessionUpdate():
                await self._update(event.session.as_update(), beta=True)

    @property
    def _session(self) -> LiveSession:
        assert self._core is not None, "opened first"
        return self._core

    async def _append(self, audio: str) -> None:
        if len(audio) // 4 * 3 > self.config.max_append_bytes:
            raise PayloadTooLargeError(
                f"An append may carry at most {self.config.max_append_bytes} bytes of audio; "
                "send it in smaller events",
                param="audio",
            )
        try:
            data = base64.b64decode(audio, validate=True)
        except binascii.Error:
            raise InvalidAudioError("audio is not valid base64", param="audio") from None
        await self._session.append(data)
        self.audio_taken(data)

    async def _update(self, update: dict[str, Any], *, beta: bool) -> None:
        try:
            state = TranscriptionSession.model_validate(merge(self._state.model_dump(), update))
        except ValidationError as exc:  # a change that clashes with what the session has
            error = validation_error(exc, None)
            error.param = f"session.{error.param}" if error.param else "session"
            raise error from None
        transcription = state.audio.input.transcription
        field = "session.input_audio_transcription" if beta else "session.audio.input.transcription"
        check_length(transcription.prompt, self.context.limits.max_prompt_chars, f"{field}.prompt")
        model = transcription.model
        if model is not None and model not in self.context.models:
            raise ClientEventError(
                "model_not_found",
                f"The model {clip(model, 64)!r} does not exist; available: "
                f"{', '.join(self.context.models)}",
                param=f"{field}.model",
            )
        await self._session.update(self._settings(state))
        self._state = state
        session_id = self._session.id
        if beta:
            self._send(BetaSessionUpdated(session=beta_session_object(state, session_id)))
        else:
            self._send(SessionUpdated(session=session_object(state, session_id)))

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
            case Partial(item_id, _, delta, _) if delta:
                self._send(TranscriptionDelta(item_id=item_id, delta=delta))
            case Completed(item_id, transcript, delta, start_ms, end_ms, result):
                if delta:
                    self._send(TranscriptionDelta(item_id=item_id, delta=delta))
                detected = self._session.settings.options.language is None and result.language
                self._send(
                    TranscriptionCompleted(
                        item_id=item_id,
                        transcript=transcript,
                        usage=DurationUsage(seconds=(end_ms - start_ms) / 1000),
                        languages=[DetectedLanguage(code=result.language)] if detected else None,
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
        self.send(event.model_dump_json())

    def send_error(self, error: ASRServeError) -> None:
        event_id = getattr(error, "event_id", None) or self._event_id
        self._send(
            ErrorEvent(
                error=ClientErrorDetail(
                    type=error.error_type,
                    code=error.code,
                    message=error.message,
                    param=error.param,
                    event_id=event_id,
                )
            )
        )
