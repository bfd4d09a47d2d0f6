"""Where each HTTP request's time went: one log line, and ``Server-Timing`` on its response.

The log line is written by the ingress when the response has ended: ``POST
/v1/audio/transcriptions 200 412.3ms model=m audio_s=4.20 codec=mp3 pieces=1
ms=upload:1.2,decode:20.3,queue:0.0,batch:10.1,engine:370.2,transport:9.8,render:0.3``, or,
for a refused request, ``... 400 3.1ms refused invalid_audio (param file): <message>``. Serve
adds the replica and the request id (``X-Request-ID``) in front.

Why not Serve's access log: it writes a line per call on every replica, so a transcription
was four lines (proxy-side ingress, its details, the decoder's call, the model's call)
and a health probe one more, none of them saying which model or how much audio. Our serve
configs turn it off (``logging_config.enable_access_log: false``) and this middleware
writes the one line an operator reads. Levels: INFO, a refusal with a 5xx status
(overload, deadline) WARNING; our own failures (500) were logged where they happened, with
their traceback, and get their line here at WARNING too. ``/health`` and ``/ready`` answered
200 are DEBUG, since probes would otherwise fill the log.

``Server-Timing`` is the W3C header browsers' developer tools show in a request's Timing
tab, and that any client can read: ``upload;dur=2.1, read;dur=0.9, queue;dur=0.0,
batch;dur=10.2, engine;dur=84.3, transport;dur=6.0, render;dur=0.4, total;dur=105.3``
(milliseconds; the same stages as the line's ``ms=``). The stages are
:mod:`asr_serve.timing`'s; each appears once the request has passed it (a refused upload has
only ``upload`` and ``total``, a cached result no model stages), summed over the pieces of a
long file (which overlap in time), and a stream's header carries what was done before its
first event. ``total`` runs from the request reaching the ingress to its response starting;
the client's own wait adds Serve's proxy and the network.
"""

from __future__ import annotations

import logging

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asr_serve.errors import ASRServeError
from asr_serve.timing import Timings, collecting
from asr_serve.untrusted import for_log

logger = logging.getLogger("ray.serve")

#: Probes: quiet while they pass.
_PROBES = ("/health", "/ready")
SERVER_TIMING = b"server-timing"


def note_request(connection: HTTPConnection, **fields: object) -> None:
    """Add ``key=value`` fields to the request's line (model, audio seconds, pieces...)."""
    _state(connection.scope).setdefault("log_fields", {}).update(fields)


def note_refusal(connection: HTTPConnection, error: ASRServeError) -> None:
    """Say on the request's line why it was refused (its status may already be 200 when a
    stream fails halfway)."""
    _state(connection.scope)["log_refusal"] = error


def _state(scope: Scope) -> dict:
    """The request's state dict, as ``Request.state`` reads it."""
    return scope.setdefault("state", {})


def _format(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


class RequestLog:
    """Pure ASGI middleware (streaming responses pass through untouched) for HTTP requests:
    collects the request's stages (:func:`asr_serve.timing.collecting`), writes them into its
    response's headers, and logs its line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timings = Timings()
        status = 500  # if the app ends without a response, the server sends a 500

        async def send_with_timing(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), (SERVER_TIMING, timings.header().encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            with collecting(timings):
                await self.app(scope, receive, send_with_timing)
        finally:
            _log(scope, status, timings)


def _log(scope: Scope, status: int, timings: Timings) -> None:
    state = scope.get("state", {})
    refusal: ASRServeError | None = state.get("log_refusal")
    path = scope["path"]
    # The path is the client's (decoded: %0A is a newline here), and so may be a refusal's
    # message and param: escaped and cut, so one request stays one line.
    elapsed_ms = 1000 * timings.elapsed()
    line = f"{for_log(scope['method'], 16)} {for_log(path)} {status} {elapsed_ms:.1f}ms"
    fields = state.get("log_fields", {})
    if fields:
        line += " " + " ".join(f"{k}={for_log(_format(v), 64)}" for k, v in fields.items())
    if timings.stages:
        line += " ms=" + ",".join(f"{k}:{1000 * v:.1f}" for k, v in timings.stages.items())
    if refusal is not None:
        param = f" (param {for_log(refusal.param, 64)})" if refusal.param else ""
        line += f" refused {refusal.code}{param}: {for_log(refusal.message, 512)}"
    if status >= 500 or (refusal is not None and refusal.status_code >= 500):
        level = logging.WARNING
    elif status < 400 and path.endswith(_PROBES):
        level = logging.DEBUG
    else:
        level = logging.INFO
    logger.log(level, "%s", line)
