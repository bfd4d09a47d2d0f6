"""An ingress replica's live sessions: who may open one, how many at once, what they share.

Every WebSocket protocol door (OpenAI Realtime, FunASR's runtime, Fun-ASR-Nano's realtime)
goes through :meth:`LiveSessions.serve`: the API key is checked before the socket is
accepted (a bad key never gets a session; the client sees the handshake refused, HTTP 403),
the replica's session cap is applied after it (close code 1013, "try again later", which
clients treat as retryable), and every session of the replica decodes through one
:class:`~asr_serve.live.scheduler.DecodeScheduler`, so finals never queue behind partials
and partials are shed first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from starlette.websockets import WebSocket

from asr_serve.api.auth import APIKeyVerifier
from asr_serve.config import LiveConfig, SpeakersConfig
from asr_serve.errors import AuthenticationError
from asr_serve.live.decode import Decode
from asr_serve.live.metrics import LiveCounters
from asr_serve.live.protocols.connection import (
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    LiveConnection,
    LiveContext,
    accepted_subprotocol,
)
from asr_serve.live.scheduler import DecodeScheduler
from asr_serve.live.speakers import Embed

logger = logging.getLogger("ray.serve")


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
        embed: Embed | None = None,
        speakers: SpeakersConfig | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.scheduler = DecodeScheduler(decode, config, metrics)
        self._api_keys = api_keys
        self._context = LiveContext(
            self.scheduler,
            list(models),
            default_model,
            config,
            metrics,
            embed,
            speakers or SpeakersConfig(),
        )
        #: Sessions open now on this replica, all doors together.
        self.active = 0

    async def serve(
        self,
        websocket: WebSocket,
        connection: type[LiveConnection],
        **door: Any,
    ) -> None:
        """Authenticate, accept, hold a session slot, and run one protocol's connection
        on the replica's shared :class:`LiveContext`; ``door``: its own arguments."""
        try:
            self._api_keys.check_websocket(websocket)
        except AuthenticationError as exc:
            logger.info("live session refused: %s", exc.message)
            await websocket.close(CLOSE_POLICY, "invalid or missing API key")
            return
        await websocket.accept(subprotocol=accepted_subprotocol(websocket, connection.subprotocols))
        if self.active >= self.config.max_sessions:
            logger.warning(
                "live session refused: %d sessions open, the replica's maximum", self.active
            )
            await websocket.close(CLOSE_TRY_AGAIN, "too many live sessions; retry later")
            return
        self.active += 1
        try:
            await connection(websocket, self._context, **door).run()
        finally:
            self.active -= 1
