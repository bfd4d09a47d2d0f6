"""What the routes of an ingress replica use, built once by the replica and found in
``app.state`` by the :data:`State` dependency."""

# No `from __future__ import annotations`: FastAPI reads `State` at runtime.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from asr_serve.api.auth import APIKeyVerifier
from asr_serve.api.upload import UploadBudget
from asr_serve.config import AppConfig
from asr_serve.live.sessions import LiveSessions
from asr_serve.serving.pipeline import TranscriptionPipeline


@dataclass(frozen=True)
class IngressState:
    config: AppConfig
    pipeline: TranscriptionPipeline
    live: LiveSessions
    uploads: UploadBudget
    api_keys: APIKeyVerifier
    #: Per model: whether a replica has loaded and warmed it up.
    ready: Callable[[], Awaitable[dict[str, bool]]]


def _state(connection: HTTPConnection) -> IngressState:
    return connection.app.state.ingress


State = Annotated[IngressState, Depends(_state)]
