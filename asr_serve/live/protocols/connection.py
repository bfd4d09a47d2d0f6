"""What every protocol adapter does alike: serve one accepted WebSocket, frame by frame.

A protocol module subclasses :class:`LiveConnection` with how it opens, reads its client's
text and binary frames, renders an error and ends its session. This module runs the rest
the same way for every door:

- frames are handled one at a time, in order, so a session's audio stays in order and a
  slow model slows its client down rather than filling a queue;
- messages go out through a queue drained by a writer task, because the session core emits
  from its own transcription tasks and must never wait on a socket;
- a refused connection (unknown ``?model=``) gets the protocol's error message, then 1008;
  a refused frame gets the protocol's error message and the session goes on, except the
  session audio limit, which ends it (4001); no audio for ``idle_timeout_s`` ends it too
  (4000); before either, the items already committed are finished and sent;
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
 4001   the session has sent ``max_session_audio_s`` of audio
======  ==========================================================================================
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from pydantic import ValidationError
from starlette.websockets import WebSocket

from asr_serve.config import LiveConfig
from asr_serve.errors import ASRServeError, InvalidRequestError, PayloadTooLargeError
from asr_serve.live.budget import NO_CLIENT, LiveClient
from asr_serve.live.core import LiveSession, SessionAudioLimitError, SessionSettings
from asr_serve.live.events import LiveEvent
from asr_serve.live.metrics import LiveMetrics
from asr_serve.live.transcribe import Transcribe

logger = logging.getLogger("ray.serve")

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_IDLE = 4000
CLOSE_AUDIO_LIMIT = 4001

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
    if model not in models:
        raise ProtocolError(
            "model_not_found",
            f"The model {model!r} does not exist; available: {', '.join(models)}",
            param="model",
        )
    return model


def invalid_message(exc: ValidationError) -> ProtocolError:
    """The first problem pydantic found in a client message, the field named as ``param``."""
    error = exc.errors()[0]
    param = ".".join(str(part) for part in error["loc"]) or None
    if error["type"] in ("extra_forbidden", "none_required"):
        # Unknown fields, and fields this server has nothing behind (null only).
        code, message = "unknown_parameter", f"{param} is not supported by this server"
        if error["type"] == "none_required":
            code, message = "unsupported_value", f"{message} (only null)"
    elif error["type"] == "missing":
        code, message = "missing_required_parameter", f"Missing required parameter: {param}"
    else:
        code = "invalid_value"
        what = f"Invalid value for {param}" if param else "Invalid message"
        message = f"{what}: {error['msg'].removeprefix('Value error, ')}"
    return ProtocolError(code, message, param=param)


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
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._last_audio = self._loop.time()
        #: The connection's model: the replica's default until :meth:`open` reads ``?model=``.
        self._model = context.default_model

    def requested_model(self) -> str:
        """The model ``?model=`` names, or the replica's default (see :func:`requested_model`)."""
        return requested_model(self.websocket, self.context.models, self.context.default_model)

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
            # Committed items are finished for a client that is still there.
            await self.end(drain=close is not None)
            self._outbox.put_nowait(None)
            await writer
        if close is not None:
            with contextlib.suppress(Exception):  # it may have gone meanwhile
                await self.websocket.close(*close)

    def send(self, text: str) -> None:
        """Queue one text frame for the client."""
        self._outbox.put_nowait(text)

    def audio_taken(self) -> None:
        """The client sent audio: the idle timeout starts again."""
        self._last_audio = self._loop.time()

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
        while True:
            idle_s = self._last_audio + self.config.idle_timeout_s - self._loop.time()
            try:
                async with asyncio.timeout(max(idle_s, 0.0)):
                    message = await self.websocket.receive()
            except TimeoutError:
                return CLOSE_IDLE, f"no audio for {self.config.idle_timeout_s:g} s"
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

    async def _write(self) -> None:
        while (text := await self._outbox.get()) is not None:
            try:
                await self.websocket.send_text(text)
            except Exception:  # the client is gone; the reader sees it and ends the session
                return
