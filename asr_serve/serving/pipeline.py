"""One request's way through the graph, as a plain class testable without Ray.

The ingress deployment gives it two async callables: ``decode`` (bytes → decoded audio,
the AudioDecoder deployment) and ``transcribe`` (model name, samples, options → result,
that model's ASR deployment). It validates the request, picks the model, applies the
limits and the deadline, and returns the engine's result for rendering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from asr_serve.api.protocol import TranscriptionRequest
from asr_serve.api.upload import Upload
from asr_serve.audio.decode import DecodedAudio, Piece
from asr_serve.config import AppConfig
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.errors import DeadlineExceededError, InvalidParameterError, ModelNotFoundError
from asr_serve.serving.cache import NO_CACHE, ResultCache
from asr_serve.serving.stitching import stitch

logger = logging.getLogger("ray.serve")

DecodeFn = Callable[[bytes], Awaitable[DecodedAudio]]
TranscribeFn = Callable[[str, np.ndarray, TranscribeOptions], Awaitable[EngineResult]]


@dataclass(frozen=True)
class Transcription:
    request: TranscriptionRequest
    model: str
    result: EngineResult
    #: Whether the result came from the cache; ``None`` when the cache is off.
    cache_hit: bool | None = None


def parse_request(fields: dict[str, str | list[str]], config: AppConfig) -> TranscriptionRequest:
    """Validate the form fields into a request; bad values are a 422 naming the field."""
    try:
        request = TranscriptionRequest.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidParameterError(f"invalid {param}: {first['msg']}", param=param) from None
    if request.prompt is not None and len(request.prompt) > config.limits.max_prompt_chars:
        raise InvalidParameterError(
            f"prompt is longer than {config.limits.max_prompt_chars} characters", param="prompt"
        )
    name = request.model or config.default_model
    if name not in {m.name for m in config.models}:
        raise ModelNotFoundError(
            f"model {name!r} does not exist; available: {', '.join(m.name for m in config.models)}",
            param="model",
        )
    if request.stream and request.response_format not in ("json", "text"):
        raise InvalidParameterError(
            "stream=true answers with text events; use response_format json or text",
            param="stream",
        )
    return request.model_copy(update={"model": name})


def transcribe_options(request: TranscriptionRequest) -> TranscribeOptions:
    """Ask the engine only for the timestamps the response will show."""
    return TranscribeOptions(
        language=request.language.lower() if request.language else None,
        prompt=request.prompt,
        temperature=request.temperature,
        segment_timestamps=request.response_format in ("verbose_json", "srt", "vtt"),
        word_timestamps="word" in request.timestamp_granularities,
    )


@dataclass(frozen=True)
class PieceResult:
    """One piece of a file (the whole file when it was not split) and its result."""

    piece: Piece
    result: EngineResult
    cache_hit: bool | None


@dataclass(frozen=True)
class Job:
    """A validated, decoded request and the event-loop time by which it must be done."""

    request: TranscriptionRequest
    audio: DecodedAudio
    deadline: float


class TranscriptionPipeline:
    def __init__(
        self,
        config: AppConfig,
        *,
        decode: DecodeFn,
        transcribe: TranscribeFn,
        cache: ResultCache | None = None,
    ) -> None:
        self.config = config
        self._decode = decode
        self._transcribe = transcribe
        self.cache: ResultCache = cache or NO_CACHE

    async def start(self, upload: Upload) -> Job:
        """Validate and decode (the decoder also plans a long file's pieces)."""
        request = parse_request(upload.fields, self.config)
        deadline = asyncio.get_running_loop().time() + self.config.limits.request_timeout_s
        async with self._deadline(deadline):
            audio = await self._decode(upload.data)
        return Job(request=request, audio=audio, deadline=deadline)

    async def finish(self, job: Job) -> Transcription:
        """Transcribe every piece and stitch them into one result for the file."""
        assert job.request.model is not None
        started = time.perf_counter()
        pieces = [piece async for piece in self.results(job)]
        logger.info(
            "transcribed model=%s audio_s=%.2f codec=%s pieces=%d asr_ms=%.1f",
            job.request.model,
            job.audio.duration_s,
            job.audio.codec,
            len(pieces),
            1000 * (time.perf_counter() - started),
        )
        result = stitch([(p.piece, p.result) for p in pieces], job.audio.duration_s)
        hits = [p.cache_hit for p in pieces if p.cache_hit is not None]
        return Transcription(
            request=job.request,
            model=job.request.model,
            result=result,
            cache_hit=all(hits) if hits else None,
        )

    async def results(self, job: Job) -> AsyncGenerator[PieceResult, None]:
        """Each piece's result, in time order, as soon as it and those before it are done.

        Pieces go to the model as separate items, so its ``@serve.batch`` mixes them with
        other requests' items; at most ``splitting.max_in_flight`` at a time, so a long
        file does not queue all its pieces ahead of a short request. Slices of the decoded
        array are views: only each piece's own samples are serialised to the model.
        """
        assert job.request.model is not None
        model, samples = job.request.model, job.audio.samples
        model_config = self.config.model(model)
        options = transcribe_options(job.request)
        in_flight = asyncio.Semaphore(self.config.splitting.max_in_flight)

        async def one(piece: Piece) -> PieceResult:
            audio = samples[piece[0] : piece[1]]
            async with in_flight:
                result, hit = await self.cache.through(
                    model_config, audio, options, lambda: self._transcribe(model, audio, options)
                )
            return PieceResult(piece=piece, result=result, cache_hit=hit)

        # Not an asyncio.TaskGroup: a failing child cancels the group's parent task, which,
        # while this generator is suspended at a yield, is the consumer's task wherever it is
        # (PEP 789). Instead the first failure propagates from its own await, and closing
        # the generator cancels the rest and waits for them, retrieving their exceptions.
        tasks = [asyncio.ensure_future(one(piece)) for piece in job.audio.pieces_to_transcribe()]
        try:
            for task in tasks:
                async with self._deadline(job.deadline):
                    result = await task
                yield result
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def _deadline(self, deadline: float) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout_at(deadline):
                yield
        except TimeoutError:
            timeout = self.config.limits.request_timeout_s
            raise DeadlineExceededError(
                f"request did not finish within {timeout:g} s; try a shorter file or retry later"
            ) from None
