"""Every error leaves the API in OpenAI's shape, whatever raised it and wherever.

``{"error": {"message", "type", "param", "code"}}`` with the error's status: our own
:class:`~asr_serve.errors.ASRServeError` (raised in the ingress, or in a decoder or ASR
replica and re-raised by Ray as the same class), Starlette's routing errors by their status,
and, last, anything unexpected: a 500 naming the request id, logged once with its traceback.
"""

from __future__ import annotations

import logging
import math

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asr_serve.api.request_log import note_refusal
from asr_serve.errors import (
    ASRServeError,
    AuthenticationError,
    ClientLimitError,
    InternalError,
    PayloadTooLargeError,
    RequestTimeoutError,
    RetryLaterError,
    UploadBudgetError,
    error_for_status,
)

logger = logging.getLogger("ray.serve")

#: Set by Serve's proxy on every request (the client's own, or one it generates).
REQUEST_ID_HEADER = "x-request-id"


def error_response(exc: ASRServeError) -> JSONResponse:
    """The error's status and body, with the headers its status calls for."""
    headers = {}
    if isinstance(exc, RetryLaterError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(
        exc, PayloadTooLargeError | RequestTimeoutError | UploadBudgetError | ClientLimitError
    ):
        # Close rather than drain: the server would otherwise read the rest of the upload.
        headers["Connection"] = "close"
    return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=headers)


def request_id_of(request: Request) -> str:
    return request.headers.get(REQUEST_ID_HEADER, "unknown")


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ASRServeError)
    if not isinstance(exc, InternalError):  # that one was logged where it happened
        note_refusal(request, exc)
    return error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return await _on_api_error(request, error_for_status(exc.status_code, message))


class CatchAllErrors:
    """The last resort: an unexpected exception becomes a 500 in the API's error shape.

    A pure ASGI middleware, not an ``Exception`` handler: Starlette re-raises after running
    such a handler (so Serve would log the traceback a second time) and its handler cannot
    tell whether the response had started. Here the traceback is logged once, with the
    request id the client also gets, and nothing is re-raised unless the response had
    already started, when only the server can end the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking)
        except Exception:
            request_id = request_id_of(Request(scope))
            logger.exception("request %s failed with an internal error", request_id)
            if started:
                raise
            error = ASRServeError(
                f"The server failed to process this request (request id {request_id}). "
                "Retry it; if this persists, report the request id."
            )
            await error_response(error)(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Render our errors, Starlette's routing errors and anything unexpected alike."""
    app.add_exception_handler(ASRServeError, _on_api_error)
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_middleware(CatchAllErrors)
