"""The ingress's calls to the other deployments, and what Ray's failures become in the API.

Every call goes through :func:`call_downstream`: a replica that died mid-request is called
once more (transcription is idempotent; Serve routes the retry to a live replica or queues
it until the restarted one is up), and Serve's own rejections become API errors through one
table, :data:`SERVE_ERRORS`, as httpx maps its transport's exceptions to its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import numpy as np
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from asr_serve.audio.decode import DecodedAudio
from asr_serve.config import SplittingConfig
from asr_serve.engines.base import EngineCapabilities, EngineResult, TranscribeOptions
from asr_serve.engines.batch import Transcribed
from asr_serve.errors import ASRServeError, InternalError, OverloadedError
from asr_serve.live.transcribe import Transcribe, TranscribeKind, TranscribeRequest
from asr_serve.timing import DECODE, record_model, timed

logger = logging.getLogger("ray.serve")

T = TypeVar("T")

#: What a handle raises when the replica's actor is gone: ``ActorDiedError`` and
#: ``ActorUnavailableError`` both derive from it. Retried once.
REPLICA_LOST = (RayActorError,)


def _back_pressure(exc: BaseException) -> ASRServeError:
    assert isinstance(exc, BackPressureError)
    return OverloadedError(
        "the service is at capacity; retry shortly", retry_after_s=exc.retry_after_s or 1.0
    )


def _unavailable(_: BaseException) -> ASRServeError:
    return OverloadedError("the model is not available right now; retry shortly")


#: Serve's exceptions from a handle call, and the API error each becomes.
SERVE_ERRORS: dict[type[BaseException], Callable[[BaseException], ASRServeError]] = {
    BackPressureError: _back_pressure,
    DeploymentUnavailableError: _unavailable,
}

#: How long ``/ready`` waits for each deployment to answer.
READY_PROBE_TIMEOUT_S = 2.0


async def call_downstream(call: Callable[[], Awaitable[T | ASRServeError]], *, target: str) -> T:
    """Await ``call()``, once more if its replica died; Serve's rejections as API errors.

    Replicas return the request's own errors (:class:`~asr_serve.errors.ASRServeError`) as
    values, so Serve does not log a client's mistake as a failure with a traceback; they are
    raised here. One raised in a replica arrives as itself too (Ray re-raises a subclass of
    it) and passes through. Any other exception from a replica is our failure: Serve logged
    it there with its traceback, so here it is one line and a 500.
    """
    try:
        try:
            return _raise_if_error(await call())
        except REPLICA_LOST as exc:
            logger.warning("%s replica lost mid-request (%r); retrying once", target, exc)
        try:
            return _raise_if_error(await call())
        except REPLICA_LOST:
            raise OverloadedError(
                f"the {target} replica failed twice while serving this request; retry shortly"
            ) from None
    except tuple(SERVE_ERRORS) as exc:
        raise next(f for cls, f in SERVE_ERRORS.items() if isinstance(exc, cls))(exc) from None
    except RayTaskError as exc:
        if isinstance(exc, ASRServeError):
            raise
        logger.error("%s replica failed: %s (traceback in that replica's log)", target, exc.cause)
        raise InternalError(
            f"The {target} deployment failed to process this request. Retry it; if this "
            "persists, report the X-Request-ID of this response."
        ) from None


def _raise_if_error(value: T | ASRServeError) -> T:
    if isinstance(value, ASRServeError):
        raise value
    return value


async def _model_call(
    call: Callable[[], Awaitable[Transcribed | ASRServeError | None]], *, target: str
) -> EngineResult | None:
    """A model replica's result, its times recorded for the current request
    (:mod:`asr_serve.timing`); ``None``: a partial the replica dropped."""
    started = time.perf_counter()
    done = await call_downstream(call, target=target)
    if done is None:
        return None
    record_model(done.times, time.perf_counter() - started)
    return done.result


class Downstream:
    """The decoder and the models as the ingress sees them: plain async methods."""

    def __init__(
        self,
        decoder: DeploymentHandle,
        models: dict[str, DeploymentHandle],
        speakers: DeploymentHandle | None = None,
    ) -> None:
        # `.options()` starts each handle's router now, so a new ingress replica (redeploy,
        # scale-up) learns the replicas before its first requests instead of holding them
        # as queued, against max_queued_requests, while it asks.
        self._decoder = decoder.options()
        self._models = {name: handle.options() for name, handle in models.items()}
        self._speakers = None if speakers is None else speakers.options()
        #: Last readiness seen per model, so ``/ready`` logs changes, not every probe.
        self._ready: dict[str, bool] = {}
        #: Per model, what its engine can do: fixed for a replica's life, asked once.
        self._capabilities: dict[str, EngineCapabilities] = {}

    async def decode(
        self, data: bytes, splitting: SplittingConfig, regions: bool = False
    ) -> DecodedAudio:
        with timed(DECODE):
            return await call_downstream(
                lambda: self._decoder.decode.remote(data, splitting, regions), target="decoder"
            )

    @property
    def diarizes(self) -> bool:
        """Whether the Speakers deployment is part of the graph."""
        return self._speakers is not None

    async def embed(self, clips: list[np.ndarray], client: str) -> np.ndarray:
        """Speaker embeddings of clips, one row each, as ``client``'s (the Speakers
        deployment)."""
        assert self._speakers is not None, "speakers are off"
        speakers = self._speakers
        return await call_downstream(
            lambda: speakers.embed.remote(clips, client), target="speakers"
        )

    async def transcribe(
        self,
        model: str,
        audio: np.ndarray,
        options: TranscribeOptions,
        admitted: bool,
        client: str,
    ) -> EngineResult:
        handle = self._models[model]
        result = await _model_call(
            lambda: handle.transcribe.remote(audio, options, admitted, client=client),
            target=model,
        )
        assert result is not None  # only partials are dropped
        return result

    async def capabilities(self, model: str) -> EngineCapabilities:
        if model not in self._capabilities:
            handle = self._models[model]
            self._capabilities[model] = await call_downstream(
                lambda: handle.capabilities.remote(), target=model
            )
        return self._capabilities[model]

    def live_transcribe(self, partial_model_wait_s: float) -> Transcribe:
        """Live sessions' transcriptions, as their client's: a final is admitted by the
        model's queue as a file's piece is, in its client's share (refused, its item fails).
        Partials are marked: the model's replica takes them only behind requests and drops
        them after ``partial_model_wait_s``."""

        async def transcribe(request: TranscribeRequest) -> EngineResult | None:
            partial = request.kind is TranscribeKind.PARTIAL
            handle = self._models[request.model]
            return await _model_call(
                lambda: handle.transcribe.remote(
                    request.audio,
                    request.options,
                    partial_wait_s=partial_model_wait_s if partial else None,
                    client=request.client,
                ),
                target=request.model,
            )

        return transcribe

    async def ready(self) -> dict[str, bool]:
        """Per model: whether a replica has loaded and warmed it up (answers within 2 s)."""
        names = list(self._models)
        states = await asyncio.gather(*(self._probe(name) for name in names))
        return dict(zip(names, states, strict=True))

    async def _probe(self, name: str) -> bool:
        try:
            ready = bool(
                await asyncio.wait_for(self._models[name].ready.remote(), READY_PROBE_TIMEOUT_S)
            )
            reason = "no answer" if not ready else ""
        except TimeoutError:
            ready, reason = False, f"no replica answered within {READY_PROBE_TIMEOUT_S:g} s"
        except Exception as exc:  # any failure means "not ready"; say which
            ready, reason = False, f"{type(exc).__name__}: {exc}"
        if self._ready.get(name) != ready:
            if ready:
                logger.info("model %s is ready", name)
            else:
                logger.warning("model %s is not ready: %s", name, reason)
            self._ready[name] = ready
        return ready
