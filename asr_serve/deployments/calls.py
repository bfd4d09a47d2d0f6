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

#: Serve's gRPC transport (``SERVE_ENV``) sends a call's arguments and result by value, in
#: one message: cheapest for the usual few seconds of audio, but its cost grows faster than
#: the bytes, and from about a MiB Ray's object store is cheaper (through the whole path,
#: a 28 s clip's 1.8 MB of float32 samples 2 ms faster by reference, a 10 s clip's 0.64 MB
#: 1.4 ms slower; 300 s between two bare replicas 124 ms by value, 12 by reference:
#: benchmarks/README.md, "large calls by reference"). Calls carrying at least this many
#: bytes go by reference.
BY_REFERENCE_MIN_BYTES = 1 << 20

#: A compressed upload decodes to several times its bytes (128 kbit/s MP3 to 16 kHz float32:
#: four times), and the decoder's result travels the same way as its call, so a decode goes
#: by reference from a quarter of :data:`BY_REFERENCE_MIN_BYTES` of upload.
DECODED_PER_UPLOAD_BYTE = 4


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


class SizedHandle:
    """One deployment's handle both ways: by value for small calls, by reference for large
    ones (:data:`BY_REFERENCE_MIN_BYTES`). Both share one router, so one set of replica
    queue lengths and one queued-request count."""

    def __init__(self, handle: DeploymentHandle) -> None:
        # `.options()` starts the handle's router now, so a new ingress replica (redeploy,
        # scale-up) learns the replicas before its first requests instead of holding them
        # as queued, against max_queued_requests, while it asks.
        self.small = handle.options()
        self.large = self.small.options(_by_reference=True)

    def carrying(self, nbytes: int) -> DeploymentHandle:
        """The handle for a call whose arguments and result come to about ``nbytes``."""
        return self.large if nbytes >= BY_REFERENCE_MIN_BYTES else self.small


class Downstream:
    """The decoder and the models as the ingress sees them: plain async methods."""

    def __init__(
        self,
        decoder: DeploymentHandle,
        models: dict[str, DeploymentHandle],
        speakers: DeploymentHandle | None = None,
    ) -> None:
        self._decoder = SizedHandle(decoder)
        self._models = {name: SizedHandle(handle) for name, handle in models.items()}
        self._speakers = None if speakers is None else SizedHandle(speakers)
        #: Last readiness seen per model, so ``/ready`` logs changes, not every probe.
        self._ready: dict[str, bool] = {}
        #: Per model, what its engine can do: fixed for a replica's life, asked once.
        self._capabilities: dict[str, EngineCapabilities] = {}

    async def decode(
        self, data: bytes, splitting: SplittingConfig, regions: bool = False
    ) -> DecodedAudio:
        decoder = self._decoder.carrying(len(data) * DECODED_PER_UPLOAD_BYTE)
        with timed(DECODE):
            return await call_downstream(
                lambda: decoder.decode.remote(data, splitting, regions), target="decoder"
            )

    @property
    def diarizes(self) -> bool:
        """Whether the Speakers deployment is part of the graph."""
        return self._speakers is not None

    async def embed(self, clips: list[np.ndarray], client: str) -> np.ndarray:
        """Speaker embeddings of clips, one row each, as ``client``'s (the Speakers
        deployment)."""
        assert self._speakers is not None, "speakers are off"
        speakers = self._speakers.carrying(sum(clip.nbytes for clip in clips))
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
        handle = self._models[model].carrying(audio.nbytes)
        result = await _model_call(
            lambda: handle.transcribe.remote(audio, options, admitted, client=client),
            target=model,
        )
        assert result is not None  # only partials are dropped
        return result

    async def capabilities(self, model: str) -> EngineCapabilities:
        if model not in self._capabilities:
            handle = self._models[model].small
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
            handle = self._models[request.model].carrying(request.audio.nbytes)
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
                await asyncio.wait_for(
                    self._models[name].small.ready.remote(), READY_PROBE_TIMEOUT_S
                )
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
