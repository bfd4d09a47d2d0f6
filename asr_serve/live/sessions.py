"""An ingress replica's live sessions: how many at once, and what they share.

Every WebSocket protocol door (OpenAI Realtime, FunASR's runtime, Fun-ASR-Nano's realtime)
goes through :meth:`LiveSessions.serve` once its route has checked the API key: the socket
is accepted, the replica's session cap is applied (close code 1013, "try again later", which
clients treat as retryable), and every session of the replica is transcribed through one
:class:`~asr_serve.live.partials.PartialScheduler`, so finals never queue behind partials
and partials are shed first.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from starlette.websockets import WebSocket

from asr_serve.config import LimitsConfig, LiveConfig, SpeakersConfig
from asr_serve.errors import RateLimitError
from asr_serve.live.budget import NO_CLIENT, LiveClient
from asr_serve.live.metrics import LiveCounters
from asr_serve.live.partials import PartialScheduler
from asr_serve.live.protocols.connection import (
    CLOSE_TRY_AGAIN,
    LiveConnection,
    LiveContext,
    accepted_subprotocol,
)
from asr_serve.live.transcribe import Transcribe
from asr_serve.speakers.encoders import Embed

logger = logging.getLogger("ray.serve")


class LiveSessions:
    def __init__(
        self,
        config: LiveConfig,
        *,
        transcribe: Transcribe,
        metrics: LiveCounters,
        models: Sequence[str],
        default_model: str,
        limits: LimitsConfig,
        embed: Embed | None = None,
        speakers: SpeakersConfig | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.scheduler = PartialScheduler(transcribe, config, metrics)
        self._context = LiveContext(
            self.scheduler,
            list(models),
            default_model,
            config,
            metrics,
            limits,
            embed,
            speakers or SpeakersConfig(),
        )
        #: Sessions open now on this replica, all doors together.
        self.active = 0

    async def serve(
        self,
        websocket: WebSocket,
        connection: type[LiveConnection],
        client: LiveClient = NO_CLIENT,
        **door: Any,
    ) -> None:
        """Accept, hold a session slot of the replica's and one of the client's, and run one
        protocol's connection on the replica's shared :class:`LiveContext` as ``client``'s;
        ``door``: its own arguments. The caller has checked the client's API key."""
        await websocket.accept(subprotocol=accepted_subprotocol(websocket, connection.subprotocols))
        if self.active >= self.config.max_sessions:
            logger.warning(
                "live session refused: %d sessions open, the replica's maximum", self.active
            )
            await websocket.close(CLOSE_TRY_AGAIN, "too many live sessions; retry later")
            return
        try:
            held = client.hold_session()
        except RateLimitError as exc:
            logger.info("live session refused for %s: %s", client.id, exc.message)
            await websocket.close(CLOSE_TRY_AGAIN, "too many live sessions for this client")
            return
        self.active += 1
        try:
            with held:
                context = dataclasses.replace(self._context, client=client)
                await connection(websocket, context, **door).run()
        finally:
            self.active -= 1
