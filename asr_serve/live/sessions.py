"""An ingress replica's live sessions: who may open one, how many at once, what they share.

Every WebSocket protocol door (OpenAI Realtime, FunASR's) goes through :meth:`LiveSessions.serve`:
the API key is checked before the socket is accepted (a bad key never gets a session, the
client sees the handshake refused), the replica's session cap is applied after it (close
code 1013, "try again later", which clients treat as retryable), and every session of the
replica decodes through one :class:`~asr_serve.live.scheduler.DecodeScheduler`, so finals
never queue behind partials and partials are shed first.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from typing import Protocol

from starlette.websockets import WebSocket

from asr_serve.api.auth import (
    KEY_SUBPROTOCOL,
    APIKeyVerifier,
    check_websocket,
    offered_subprotocols,
)
from asr_serve.config import LiveConfig
from asr_serve.errors import AuthenticationError
from asr_serve.live.decode import Decode, Transcriber
from asr_serve.live.metrics import LiveCounters, LiveMetrics
from asr_serve.live.scheduler import DecodeScheduler

logger = logging.getLogger("ray.serve")

#: RFC 6455: the server is overloaded; try again later (clients treat it as retryable).
CLOSE_TRY_AGAIN_LATER = 1013
#: RFC 6455: policy violation. Before the handshake Starlette turns it into HTTP 403.
CLOSE_POLICY = 1008


class SessionRunner(Protocol):
    """A protocol adapter's entry point, run on an accepted socket until the session ends."""

    def __call__(
        self,
        websocket: WebSocket,
        *,
        transcriber: Transcriber,
        models: Sequence[str],
        default_model: str,
        config: LiveConfig,
        metrics: LiveMetrics,
    ) -> Awaitable[None]: ...


def choose_subprotocol(offered: Sequence[str]) -> str | None:
    """The subprotocol to accept. A browser fails the connection unless the server picks one
    it offered, so: ``realtime`` (OpenAI's), else the first other one, else, when the key is
    all it offered, the key's own (sent back to the one client that sent it)."""
    if not offered:
        return None
    if "realtime" in offered:
        return "realtime"
    others = [p for p in offered if not p.startswith(KEY_SUBPROTOCOL)]
    return (others or list(offered))[0]


class LiveSessions:
    def __init__(
        self,
        config: LiveConfig,
        *,
        decode: Decode,
        metrics: LiveCounters,
        api_keys: APIKeyVerifier,
        models: Sequence[str],
        default_model: str,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.scheduler = DecodeScheduler(decode, config, metrics)
        self._api_keys = api_keys
        self._models = list(models)
        self._default_model = default_model
        #: Sessions open now on this replica.
        self.active = 0

    async def serve(self, websocket: WebSocket, run: SessionRunner) -> None:
        """Authenticate, accept, hold a session slot, and run one protocol's session."""
        try:
            check_websocket(self._api_keys, websocket)
        except AuthenticationError as exc:
            logger.info("live session refused: %s", exc.message)
            await websocket.close(CLOSE_POLICY, "invalid or missing API key")
            return
        await websocket.accept(subprotocol=choose_subprotocol(offered_subprotocols(websocket)))
        if self.active >= self.config.max_sessions:
            logger.warning(
                "live session refused: %d sessions open, the replica's maximum", self.active
            )
            await websocket.close(CLOSE_TRY_AGAIN_LATER, "too many live sessions; retry later")
            return
        self.active += 1
        try:
            await run(
                websocket,
                transcriber=self.scheduler,
                models=self._models,
                default_model=self._default_model,
                config=self.config,
                metrics=self.metrics,
            )
        finally:
            self.active -= 1
