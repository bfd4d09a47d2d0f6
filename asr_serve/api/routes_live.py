"""The live WebSocket doors: ``/v1/realtime``, ``/v1/funasr/ws``, ``/v1/funasr/realtime``.

A browser's ``Origin`` (:func:`asr_serve.api.cors.origin_allowed`) and the API key, from the
header, OpenAI's browser subprotocol or ``?api_key=``, are checked here before the socket is
accepted: a foreign page or a bad key never gets a session (the client sees the handshake
refused, HTTP 403). The replica's :class:`~asr_serve.live.sessions.LiveSessions` does the
rest: the session cap, and one protocol's connection on the shared session core.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

import logging
from typing import Any

from fastapi import APIRouter
from starlette.websockets import WebSocket

from asr_serve.api.cors import origin_allowed
from asr_serve.api.state import IngressState, State
from asr_serve.errors import AuthenticationError
from asr_serve.live.protocols.connection import CLOSE_POLICY, LiveConnection
from asr_serve.live.protocols.funasr_realtime import FunASRRealtimeConnection
from asr_serve.live.protocols.funasr_runtime import FunASRRuntimeConnection
from asr_serve.live.protocols.openai_realtime import OpenAIRealtimeConnection
from asr_serve.untrusted import for_log

logger = logging.getLogger("ray.serve")

#: Open at the HTTP level: each door checks the key itself, before accepting.
router = APIRouter()


async def _serve(
    websocket: WebSocket, ingress: IngressState, connection: type[LiveConnection], **door: Any
) -> None:
    if not origin_allowed(websocket, ingress.config.cors):
        origin = websocket.headers.get("origin", "")
        logger.info("live session refused: origin %s is not allowed", for_log(origin, 128))
        await websocket.close(CLOSE_POLICY, "origin not allowed")
        return
    try:
        ingress.api_keys.check_websocket(websocket)
    except AuthenticationError as exc:
        logger.info("live session refused: %s", exc.message)
        await websocket.close(CLOSE_POLICY, "invalid or missing API key")
        return
    await ingress.live.serve(websocket, connection, **door)


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket, ingress: State) -> None:
    """OpenAI's Realtime transcription sessions (``client.realtime.connect``)."""
    await _serve(websocket, ingress, OpenAIRealtimeConnection)


@router.websocket("/v1/funasr/ws")
async def funasr_ws(websocket: WebSocket, ingress: State) -> None:
    """FunASR's runtime protocol (2pass, online, offline); whole files as file requests."""
    await _serve(
        websocket,
        ingress,
        FunASRRuntimeConnection,
        transcribe_file=ingress.pipeline.transcribe_file,
    )


@router.websocket("/v1/funasr/realtime")
async def funasr_realtime(websocket: WebSocket, ingress: State) -> None:
    """funasr's Fun-ASR-Nano realtime protocol (START, HOTWORDS, LANGUAGE, COMMIT, STOP)."""
    await _serve(websocket, ingress, FunASRRealtimeConnection)
