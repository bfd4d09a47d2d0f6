"""What every protocol adapter does alike: serve one accepted WebSocket, frame by frame.

A protocol module subclasses :class:`LiveConnection` with how it opens, reads its client's
text and binary frames, renders an error and ends its session. This module runs the rest
the same way for every door:

- frames are handled one at a time, in order, so a session's audio stays in order and a
  slow model slows its client down rather than filling a queue;
- messages go out through an :class:`~asr_serve.live.protocols.outbox.Outbox` drained by a
  writer task, because the session core emits from its own transcription tasks and must
  never wait on a socket; the outbox is bounded (``max_outbox_bytes``) and paced
  (``send_rate_bytes_s``): a client that does not read is closed (4002);
- a refused connection (unknown ``?model=``) gets the protocol's error message, then 1008;
  a refused frame gets the protocol's error message and the session goes on, except the
  connection's audio limit, which ends it (4001); no audio for ``idle_timeout_s`` ends it
  (4000; an empty frame or append is not audio), and so does ``max_session_s`` of wall
  clock (4003); before these three, the items already committed are finished and sent;
- an unexpected exception is logged and closes with 1011.

Close codes, for every door:

======  ==========================================================================================
 code   when
======  ==========================================================================================
 1000   normal: the client closed (the server never closes a healthy, active session)
 1008   policy: ``?model=`` names no served model (the protocol's error message says so first),
        or a protocol-specific refusal at connect; the route also uses it for a bad API key
 1009   a frame over the server's WebSocket frame limit (uvicorn closes it itself, 16 MiB)
 1011   internal error
 1013   try again later: the replica, or the client (``clients.max_live_sessions``), has its
        maximum of sessions (at connect)
 4000   idle: no audio for ``idle_timeout_s``
 4001   the connection has sent ``max_session_audio_s`` of audio (all its sessions together)
 4002   the client does not read: ``max_outbox_bytes`` of messages wait for it (what waits is
        dropped). Behind Serve's proxy a client that stops reading altogether is also cut
        by the proxy's keepalive pings (uvicorn's, 20 s + 20 s), which the replica sees as
        the client leaving
 4003   the connection has lasted ``max_session_s``
======  ==========================================================================================
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import ValidationError
from starlette.websockets import WebSocket

from asr_serve.config import LimitsConfig, LiveConfig, SpeakersConfig
from asr_serve.errors import ASRServeError, InvalidRequestError, PayloadTooLargeError
from asr_serve.live.budget import NO_CLIENT, AudioBudget, LiveClient, SessionAudioLimitError
from asr_serve.live.core import LiveSession, SessionSettings
from asr_serve.live.events import LiveEvent
from asr_serve.live.metrics import LiveMetrics
from asr_serve.live.protocols.outbox import Outbox, encoded_size
from asr_serve.live.speakers import SessionSpeakers
from asr_serve.live.transcribe import Transcribe
from asr_serve.speakers.encoders import Embed
from asr_serve.speakers.models import resolve
from asr_serve.untrusted import JSONShapeError, check_json_shape, clip

logger = logging.getLogger("ray.serve")

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_IDLE = 4000
CLOSE_AUDIO_LIMIT = 4001
CLOSE_NOT_READING = 4002
CLOSE_SESSION_TIME = 4003

#: Once a session has ended, what waits in its outbox has this long to go out.
_WRITER_GRACE_S = 10.0

#: Why a connection ends: the close code and reason, or ``None`` when the client left.
Close = tuple[int, str] | None


class ProtocolError(InvalidRequestError):
    """A client frame or connection parameter the protocol refuses; ``code`` names the
    mistake (``invalid_json``, ``unknown_parameter``, ``model_not_found`` ...)."""

    def __init__(self, code: str, message: str, *, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.code = code


def accepted_subprotocol(websocket: WebSocket, supported: Sequence[str]) -> str | None:
    """The subprotocol to accept the socket with: the first the client offers that the
    protocol names in ``supported``, or ``None``.

    Browsers fail a handshake whose answer names none of the subprotocols they offered (and
    OpenAI's browser clients offer ``realtime`` beside their key); a key subprotocol
    (:data:`asr_serve.api.auth.KEY_SUBPROTOCOL_PREFIX`) is never echoed back.
    """
    offered = websocket.scope.get("subprotocols", ())
    return next((p for p in offered if p in supported), None)


def requested_model(websocket: WebSocket, models: Sequence[str], default_model: str) -> str:
    """The model ``?model=`` names, or the default; :class:`ProtocolError` if not served."""
    model = websocket.query_params.get("model", default_model)
    if resolve(model, models, default_model)[0] not in models:
        raise ProtocolError(
            "model_not_found",
            f"The model {clip(model, 64)!r} does not exist; available: {', '.join(models)}",
            param="model",
        )
    return model


def invalid_message(exc: ValidationError) -> ProtocolError:
    """The first problem pydantic found in a client message, the field named as ``param``."""
    error = exc.errors()[0]
    # A field's name is the client's too (an unknown one is echoed): cut like any echo.
    param = clip(".".join(str(part) for part in error["loc"]), 128) or None
    if error["type"] in ("extra_forbidden", "none_required"):
        # Unknown fields, and fields this server has nothing behind (null only).
        code, message = "unknown_parameter", f"{param} is not supported by this server"
        if error["type"] == "none_required":
            code, message = "unsupported_value", f"{message} (only null)"
    elif error["type"] == "missing":
        code, message = "missing_required_parameter", f"Missing required parameter: {param}"
    else:
        code = "string_above_max_length" if error["type"] == "string_too_long" else "invalid_value"
        what = f"Invalid value for {param}" if param else "Invalid message"
        message = f"{what}: {error['msg'].removeprefix('Value error, ')}"
    return ProtocolError(code, message, param=param)


def check_length(value: str | None, limit: int, param: str) -> None:
    """Refuse a client string over ``limit`` characters, naming it (OpenAI's code for it)."""
    if value is not None and len(value) > limit:
        raise ProtocolError(
            "string_above_max_length",
            f"{param} may be at most {limit} characters; got {len(value)}",
            param=param,
        )


def json_shape(text: str) -> None:
    """Refuse JSON nested too deep before it is parsed (:func:`check_json_shape`)."""
    try:
        check_json_shape(text)
    except JSONShapeError as exc:
        raise ProtocolError("invalid_json", f"The message is not accepted: {exc}") from None


@dataclass(frozen=True)
class LiveContext:
    """What a connection runs on, handed to a protocol adapter whole: what every session of
    the ingress replica shares (its partial scheduler, the models it serves, its live
    settings and metrics) and the connection's client."""

    transcribe: Transcribe
    models: Sequence[str]
    default_model: str
    config: LiveConfig
    metrics: LiveMetrics
    #: The application's limits on client input that every door shares (the prompt's).
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    #: Speaker embeddings of utterances (the Speakers deployment); ``None``: speakers off.
    embed: Embed | None = None
    speakers: SpeakersConfig = field(default_factory=SpeakersConfig)
    client: LiveClient = NO_CLIENT


class LiveConnection(abc.ABC):
    """One client's connection in one protocol; :meth:`run` serves it to the end."""

    #: The label the protocol's sessions carry in metrics.
    protocol: ClassVar[str]
    #: WebSocket subprotocols the door may answer with (the first its client offers).
    subprotocols: ClassVar[tuple[str, ...]] = ()

    def __init__(self, websocket: WebSocket, context: LiveContext) -> None:
        self.websocket = websocket
        self.context = context
        self.config = context.config
        self._outbox = Outbox(
            self.config.max_outbox_bytes,
            self.config.send_rate_bytes_s,
            on_overflow=self._stop_receiving,
        )
        self._loop = asyncio.get_running_loop()
        self._last_audio = self._opened_at = self._loop.time()
        #: The wait for the client's next frame, while it lasts: an overflow ends it.
        self._receiving: asyncio.Timeout | None = None
        #: Audio the connection may send in all, whatever sessions it opens.
        self.audio_budget = AudioBudget(self.config.max_session_audio_s)
        #: The connection's model: the replica's default until :meth:`open` reads ``?model=``.
        self._model = context.default_model

    def requested_model(self) -> str:
        """The model ``?model=`` names, or the replica's default (see :func:`requested_model`)."""
        return requested_model(self.websocket, self.context.models, self.context.default_model)

    def served_model(self, name: str) -> tuple[str, bool]:
        """The served model a session's model name means, and whether it asks for speakers
        (``<model>-diarize``, as OpenAI selects its diarizing model by name)."""
        return resolve(name, self.context.models, self.context.default_model)

    def speakers_model(self, param: str) -> tuple[str, bool]:
        """:meth:`served_model` of ``?model=``; a diarizing name is refused (1008) when this
        server has no Speakers deployment."""
        model, speakers = self.served_model(self.requested_model())
        if speakers and self.context.embed is None:
            raise ProtocolError(
                "unsupported_value",
                "speaker diarization is off on this server (speakers.enabled)",
                param=param,
            )
        return model, speakers

    def new_session(
        self, settings: SessionSettings, emit: Callable[[LiveEvent], None]
    ) -> LiveSession:
        """A session core on the replica's shared pieces, labelled with this protocol."""
        context = self.context
        return LiveSession(
            settings,
            self.config,
            context.transcribe,
            emit,
            context.metrics,
            protocol=self.protocol,
            audio_budget=self.audio_budget,
            speakers=(
                SessionSpeakers(context.embed, context.speakers, context.client.id)
                if settings.speakers and context.embed is not None
                else None
            ),
            client=context.client,
        )

    @abc.abstractmethod
    async def open(self) -> None:
        """Start: check the connection's parameters (an :class:`ASRServeError` refuses the
        connection with 1008) and send what the protocol sends first."""

    @abc.abstractmethod
    async def on_text(self, text: str) -> None:
        """Act on a text frame; an :class:`ASRServeError` is rendered to the client."""

    @abc.abstractmethod
    async def on_bytes(self, data: bytes) -> None:
        """Act on a binary frame; an :class:`ASRServeError` is rendered to the client."""

    @abc.abstractmethod
    def send_error(self, error: ASRServeError) -> None:
        """Send ``error`` as the protocol's error message."""

    @abc.abstractmethod
    async def end(self, *, drain: bool) -> None:
        """End the session, if one was opened: with ``drain``, once its items are sent."""

    async def run(self) -> None:
        """Serve the connection until the client leaves or the session must end."""
        writer = asyncio.create_task(self._write())
        close: Close = (CLOSE_INTERNAL_ERROR, "internal error")
        try:
            close = await self._serve()
        except Exception:
            logger.exception("%s connection failed", self.protocol)
        finally:
            # Committed items are finished for a client that is still there and reading.
            drain = close is not None and close[0] != CLOSE_NOT_READING
            await self.end(drain=drain)
            self._outbox.close()
            if drain:
                await asyncio.wait([writer], timeout=_WRITER_GRACE_S)
            writer.cancel()  # a client that does not read could hold it in send for ever
            await asyncio.wait([writer])
        if close is not None:
            with contextlib.suppress(Exception):  # it may have gone meanwhile
                await self.websocket.close(*close)

    def send(self, text: str) -> None:
        """Queue one text frame for the client."""
        self._outbox.put(text)

    def audio_taken(self, data: bytes) -> None:
        """The client sent audio: the idle timeout starts again. An empty frame or append
        carries none, so it keeps no session alive."""
        if data:
            self.waited()

    def waited(self) -> None:
        """The connection waited on the server, not on its client: the idle timeout starts
        again."""
        self._last_audio = self._loop.time()

    def check_text_size(self, text: str) -> None:
        """Refuse a control frame over ``max_control_frame_bytes`` before it is parsed."""
        size = encoded_size(text)
        if size > self.config.max_control_frame_bytes:
            raise PayloadTooLargeError(
                f"A text frame may carry at most {self.config.max_control_frame_bytes} bytes; got "
                f"{size}. Send audio in binary frames",
            )

    def check_frame_size(self, data: bytes) -> None:
        """Refuse an audio frame over ``max_append_bytes`` before it is read."""
        if len(data) > self.config.max_append_bytes:
            raise PayloadTooLargeError(
                f"An audio frame may carry at most {self.config.max_append_bytes} bytes; "
                f"got {len(data)}. Send the audio in smaller frames",
                param="audio",
            )

    async def _serve(self) -> Close:
        try:
            await self.open()
        except ASRServeError as exc:
            self.send_error(exc)
            return CLOSE_POLICY, exc.code
        ends_at = self._opened_at + self.config.max_session_s
        while True:
            if self._outbox.overflowed:
                return self._not_reading()
            idle_at = self._last_audio + self.config.idle_timeout_s
            try:
                async with asyncio.timeout_at(min(idle_at, ends_at)) as self._receiving:
                    message = await self.websocket.receive()
            except TimeoutError:
                if self._outbox.overflowed:
                    return self._not_reading()
                if self._loop.time() >= ends_at:
                    return CLOSE_SESSION_TIME, f"session over {self.config.max_session_s:g} s"
                return CLOSE_IDLE, f"no audio for {self.config.idle_timeout_s:g} s"
            finally:
                self._receiving = None
            if message["type"] == "websocket.disconnect":
                return None
            try:
                if message.get("bytes") is not None:
                    await self.on_bytes(message["bytes"])
                else:
                    await self.on_text(message.get("text") or "")
            except ASRServeError as exc:
                self.send_error(exc)
                if isinstance(exc, SessionAudioLimitError):
                    return CLOSE_AUDIO_LIMIT, "session audio limit reached"
            # Frames the proxy has already queued come back from ``receive`` without
            # suspending: a client that floods frames would hold the Ingress's event loop,
            # and every request on it, until its flood is read. One frame, then the others.
            await asyncio.sleep(0)

    def _stop_receiving(self) -> None:
        """The outbox overflowed: stop waiting for the client's next frame."""
        if self._receiving is not None:
            self._receiving.reschedule(self._loop.time())

    def _not_reading(self) -> Close:
        logger.info(
            "%s connection closed: its client left %d bytes of messages unread",
            self.protocol,
            self.config.max_outbox_bytes,
        )
        return CLOSE_NOT_READING, "client not reading"

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None:
            try:
                await self.websocket.send_text(text)
            except Exception:  # the client is gone; the reader sees it and ends the session
                return
