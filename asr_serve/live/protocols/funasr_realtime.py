"""funasr's Fun-ASR-Nano realtime protocol (``funasr/bin/realtime_ws.py``, funasr 1.4.16) on
the live session core.

Clients of ``funasr-realtime-server`` switch to this server by changing the URL. The route
authenticates and accepts the WebSocket, then runs a :class:`FunASRRealtimeConnection` on it.

Connection: ``?model=`` picks the model; ``?endpoint_mode=client`` is funasr's
``--endpoint-mode client`` (the client ends each utterance with ``COMMIT``), the default
``server`` cuts utterances at pauses with the server's VAD.

Client to server: text commands (names case-insensitive, arguments as sent; a frame at most
``live.max_control_frame_bytes``) and binary frames of PCM16 little-endian mono 16 kHz
audio, any length:

- ``START``: a new session (clock, sentences and audio start again; hotwords and language
  stay, and so does what the connection has spent of ``max_session_audio_s``)
  → ``{"event": "started"}``;
- ``HOTWORDS:a,b`` → ``{"event": "hotwords_set", "hotwords": ["a", "b"]}``: the model's
  hotwords (Fun-ASR) or prompt (Whisper), at most ``limits.max_prompt_chars`` of them
  joined; ``HOTWORDS:`` clears them;
- ``LANGUAGE:xx`` → ``{"event": "language_set", "language": "xx"}``: an ISO code (``en``) or
  a name as Fun-ASR-Nano's prompt takes it (``中文``, ``英文`` ...); ``LANGUAGE:`` clears it;
- ``COMMIT`` (client endpoints only): ends the utterance → one ``is_final`` result, holding
  the sentences since the last ``COMMIT`` (none if it was too short to transcribe);
- ``STOP``: ends the session → a final result if audio came since ``START`` (client mode:
  since the last ``COMMIT``), then ``{"event": "stopped"}`` (always).

Results: ``{"sentences": [{"text", "start", "end"}], "partial", "partial_start_ms",
"duration_ms", "is_final"}``, times in ms since ``START``. ``sentences`` are final; with
server endpoints a result carries those since ``START``, with client endpoints those since
the last ``COMMIT``; as funasr's, but a result before the last carries only the latest
``max_result_sentences`` of them (so what a session sends grows with its length, not with
its square), and the ``STOP`` result all. ``partial`` is the open utterance's latest hypothesis
(replace, do not append; it may change), sent as it is transcribed again, every
``partial_interval_s`` of audio; a result also goes out as each utterance is final.

Where funasr ignores a client's mistake silently or crashes on it, this answers with the
protocol's own ``{"event": "error", "error": "<message>", "code": "<code>"}`` and the
session goes on: audio before ``START`` or after ``STOP`` (funasr's own "Session is not
active; send START first"), an unknown command, ``POSTPROCESS_HOTWORDS`` (not supported),
an odd-length frame, a frame over ``max_append_bytes``, an unknown language. Close codes are
every door's (:mod:`asr_serve.live.protocols.connection`).
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.websockets import WebSocket

from asr_serve.config import SAMPLE_RATE, ServerVAD
from asr_serve.engines.base import TranscribeOptions
from asr_serve.errors import ASRServeError
from asr_serve.live.core import CommitEmptyError, LiveSession, SessionSettings
from asr_serve.live.events import (
    Committed,
    Completed,
    Failed,
    LiveEvent,
    Partial,
    SpeechStarted,
    SpeechStopped,
)
from asr_serve.live.pcm import InputFormat
from asr_serve.live.protocols.connection import (
    LiveConnection,
    LiveContext,
    ProtocolError,
    check_length,
)
from asr_serve.live.protocols.funasr_realtime_messages import (
    NOT_ACTIVE,
    ErrorEvent,
    HotwordsSet,
    LanguageSet,
    Result,
    Sentence,
    Started,
    Stopped,
    language_code,
    parse_command,
)
from asr_serve.untrusted import clip

#: funasr's server names no subprotocol and its clients offer none.
SUBPROTOCOLS: tuple[str, ...] = ()


# The connection -----------------------------------------------------------------------------


class FunASRRealtimeConnection(LiveConnection):
    protocol = "funasr_realtime"
    subprotocols = SUBPROTOCOLS

    def __init__(
        self,
        websocket: WebSocket,
        context: LiveContext,
    ) -> None:
        super().__init__(websocket, context)
        self._client_endpoints = False
        self._hotwords: tuple[str, ...] = ()
        self._language: str | None = None
        self._core: LiveSession | None = None  # between START and STOP
        self._reset()

    def _reset(self) -> None:
        """The state of one session, from ``START``."""
        self._samples = 0  # the session's clock, at 16 kHz
        self._pending = False  # audio no final result has covered yet
        self._sentences: list[Sentence] = []
        self._partial = ""
        self._partial_item: str | None = None
        self._partial_start = 0
        self._speech_open = False
        self._last_committed: tuple[str, int] | None = None  # item id, end
        self._commits: dict[str, int] = {}  # items a COMMIT ended: their end
        self._stopping = False

    async def open(self) -> None:
        self._model = self.requested_model()
        mode = self.websocket.query_params.get("endpoint_mode", "server")
        if mode not in ("server", "client"):
            raise ProtocolError(
                "invalid_value",
                f"endpoint_mode must be server or client, not {clip(mode, 64)!r}",
                param="endpoint_mode",
            )
        self._client_endpoints = mode == "client"

    async def end(self, *, drain: bool) -> None:
        if self._core is not None:
            await self._core.close(drain=drain)

    async def on_text(self, text: str) -> None:
        self.check_text_size(text)
        command = parse_command(text)
        argument = command.argument or ""
        match command.name:
            case "START":
                await self._start()
            case "HOTWORDS":
                hotwords = tuple(w.strip() for w in argument.split(",") if w.strip())
                check_length(",".join(hotwords), self.context.limits.max_prompt_chars, "hotwords")
                self._hotwords = hotwords
                await self._update()
                self._send(HotwordsSet(hotwords=list(self._hotwords)))
            case "LANGUAGE":
                self._language = language_code(argument)
                await self._update()
                self._send(LanguageSet(language=argument.strip()))
            case "COMMIT":
                if not self._client_endpoints:
                    raise ProtocolError(
                        "client_endpoints_required",
                        "COMMIT requires endpoint_mode=client: connect with ?endpoint_mode=client",
                    )
                await self._commit(self._active())
            case "STOP":
                await self._stop()

    async def on_bytes(self, data: bytes) -> None:
        core = self._active()
        self.check_frame_size(data)
        await core.append(data)
        self._samples += len(data) // 2
        self._pending = self._pending or bool(data)
        self.audio_taken(data)

    def send_error(self, error: ASRServeError) -> None:
        self._send(ErrorEvent(error=error.message, code=error.code))

    def _active(self) -> LiveSession:
        if self._core is None:
            raise ProtocolError("session_not_active", NOT_ACTIVE)
        return self._core

    def _settings(self) -> SessionSettings:
        return SessionSettings(
            model=self._model,
            input_format=InputFormat(rate=SAMPLE_RATE),
            turn_detection=None if self._client_endpoints else ServerVAD(),
            options=TranscribeOptions(
                language=self._language, prompt=",".join(self._hotwords) or None
            ),
        )

    async def _update(self) -> None:
        if self._core is not None:
            await self._core.update(self._settings())

    async def _start(self) -> None:
        if self._core is not None:  # START again: what the old session had is dropped
            await self._core.close(drain=False)
        self._reset()
        self._core = self.new_session(self._settings(), self._render)
        self._send(Started())

    async def _commit(self, core: LiveSession) -> None:
        """End the client's utterance; its final result follows when it is decoded."""
        self._pending = False
        try:
            await core.commit()
        except CommitEmptyError:  # as funasr, a COMMIT always gets one final result
            await core.clear()
            self._send_result(final=True)
            return
        assert self._last_committed is not None
        item_id, end_ms = self._last_committed
        self._commits[item_id] = end_ms

    async def _stop(self) -> None:
        core, self._core = self._core, None
        if core is not None:
            pending = self._pending
            if pending and self._client_endpoints:
                await self._commit(core)
            elif pending:
                self._stopping = True  # the sentences go out together, in the final result
                try:
                    await core.commit()
                except CommitEmptyError:
                    await core.clear()
            await core.close(drain=True)
            if pending and not self._client_endpoints:
                self._send_result(final=True)
        self._send(Stopped())

    def _render(self, event: LiveEvent) -> None:
        """The core's events as results."""
        match event:
            case SpeechStarted(_, start_ms):
                self._speech_open, self._partial_start = True, start_ms
            case SpeechStopped():
                self._speech_open = False
            case Committed(item_id, _, _, end_ms):
                self._last_committed = item_id, end_ms
            case Partial(item_id, text, _, start_ms):
                self._partial, self._partial_item, self._partial_start = text, item_id, start_ms
                if not self._stopping:
                    self._send_result(final=False)
            case Completed(item_id, transcript, _, start_ms, end_ms):
                if transcript:
                    self._sentences.append(Sentence(text=transcript, start=start_ms, end=end_ms))
                self._item_done(item_id)
            case Failed(item_id, error):
                self.send_error(error)
                self._item_done(item_id)

    def _item_done(self, item_id: str) -> None:
        if self._partial_item == item_id:
            self._partial, self._partial_item = "", None
        end_ms = self._commits.pop(item_id, None)
        if end_ms is not None:
            self._send_result(final=True, duration_ms=end_ms)
        elif not self._stopping:
            self._send_result(final=False)

    def _send_result(self, *, final: bool, duration_ms: int | None = None) -> None:
        if duration_ms is None:
            duration_ms = self._samples * 1000 // SAMPLE_RATE
        if final:
            result = Result(
                sentences=self._sentences,
                partial="",
                partial_start_ms=0,
                duration_ms=duration_ms,
                is_final=True,
            )
            if self._client_endpoints:
                self._sentences = []
        else:
            ongoing = self._partial or self._speech_open
            result = Result(
                sentences=self._sentences[-self.config.max_result_sentences :],
                partial=self._partial,
                partial_start_ms=self._partial_start if ongoing else duration_ms,
                duration_ms=duration_ms,
                is_final=False,
            )
        self._send(result)

    def _send(self, message: BaseModel) -> None:
        self.send(message.model_dump_json())
