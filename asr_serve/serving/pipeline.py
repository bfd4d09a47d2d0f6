"""One request's way through the graph, as a plain class testable without Ray.

The ingress deployment gives it async callables: ``decode`` (bytes and how to split long
audio → decoded audio, the AudioDecoder deployment, reading in place what needs no
decoding: :mod:`asr_serve.serving.in_place`), ``transcribe`` (model name, samples,
options → result, that model's ASR deployment) and ``capabilities`` (model name → what its
engine can do). It validates the request (:mod:`asr_serve.serving.requests`), picks the
model, applies the limits and the deadline, and returns the engine's result for rendering.

A whole file sent over FunASR's runtime WebSocket door takes the same way
(:meth:`TranscriptionPipeline.transcribe_file`), its options given by the door.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import numpy as np

from asr_serve.audio.decode import DecodedAudio, Piece
from asr_serve.config import AppConfig, SplittingConfig
from asr_serve.engines.base import EngineCapabilities, EngineResult, TranscribeOptions
from asr_serve.errors import DeadlineExceededError, InvalidRequestError
from asr_serve.serving.cache import NO_CACHE, ResultCache
from asr_serve.serving.requests import (
    TranscriptionRequest,
    Upload,
    model_name,
    parse_request,
    parse_translation,
    splitting_for,
    transcribe_options,
)
from asr_serve.serving.stitching import stitch
from asr_serve.timing import RENDER, timed

DecodeFn = Callable[[bytes, SplittingConfig], Awaitable[DecodedAudio]]
#: ``(model, samples, options, admitted)``; ``admitted``: an earlier piece of the request was
#: admitted, so the model must not refuse this one halfway (admission is per request).
TranscribeFn = Callable[[str, np.ndarray, TranscribeOptions, bool], Awaitable[EngineResult]]
CapabilitiesFn = Callable[[str], Awaitable[EngineCapabilities]]


async def _no_capabilities(_: str) -> EngineCapabilities:
    return EngineCapabilities()


def detected_languages(
    request: TranscriptionRequest, results: Iterable[EngineResult]
) -> tuple[str, ...]:
    """The languages the model found, in the order the pieces first spoke each; none when
    the request named its language, since then nothing was detected."""
    if request.language is not None:
        return ()
    return tuple(dict.fromkeys(r.language for r in results if r.language))


@dataclass(frozen=True)
class Transcription:
    request: TranscriptionRequest
    model: str
    result: EngineResult
    #: Whether the result came from the cache; ``None`` when the cache is off.
    cache_hit: bool | None = None
    translate: bool = False
    #: The languages the model detected (:func:`detected_languages`).
    languages: tuple[str, ...] = ()


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
    #: ``/v1/audio/translations``: English text, by a model that can translate.
    translate: bool = False

    def log_fields(self) -> dict[str, object]:
        """What the request's log line says about it."""
        return {
            "model": self.request.model,
            "audio_s": self.audio.duration_s,
            "codec": self.audio.codec,
            "pieces": len(self.audio.pieces_to_transcribe()),
        }


class TranscriptionPipeline:
    def __init__(
        self,
        config: AppConfig,
        *,
        decode: DecodeFn,
        transcribe: TranscribeFn,
        capabilities: CapabilitiesFn = _no_capabilities,
        cache: ResultCache | None = None,
    ) -> None:
        self.config = config
        self._decode = decode
        self._transcribe = transcribe
        self._capabilities = capabilities
        self.cache: ResultCache = cache or NO_CACHE

    async def start(self, upload: Upload, *, translate: bool = False) -> Job:
        """Validate and decode (the decoder also plans a long file's pieces)."""
        if translate:
            request = parse_translation(upload.fields, self.config)
            name = await self._translating_model(request.model)
            request = request.model_copy(update={"model": name})
        else:
            request = parse_request(upload.fields, self.config)
        splitting = splitting_for(request, self.config.splitting)
        deadline = asyncio.get_running_loop().time() + self.config.limits.request_timeout_s
        async with self._deadline(deadline):
            audio = await self._decode(upload.data, splitting)
        return Job(request=request, audio=audio, deadline=deadline, translate=translate)

    async def _translating_model(self, requested: str | None) -> str:
        """The named model if it can translate; with none named, the default model if it
        can, else the first that can. Which can is the engines' to say (asked once)."""
        if requested is not None:
            names = [model_name(requested, self.config)]
        else:
            names = sorted(
                (m.name for m in self.config.models), key=lambda n: n != self.config.default_model
            )
        for name in names:
            if (await self._capabilities(name)).translate:
                return name
        which = f"model {names[0]!r} cannot" if requested else "no model on this server can"
        raise InvalidRequestError(
            f"{which} translate speech (an English-only or transcription-only model); "
            "use /v1/audio/transcriptions, or configure a multilingual Whisper model",
            param="model",
        )

    async def finish(self, job: Job) -> Transcription:
        """Transcribe every piece and stitch them into one result for the file."""
        assert job.request.model is not None
        pieces = [piece async for piece in self.results(job)]
        with timed(RENDER):
            result = stitch([(p.piece, p.result) for p in pieces], job.audio.duration_s)
        hits = [p.cache_hit for p in pieces if p.cache_hit is not None]
        return Transcription(
            request=job.request,
            model=job.request.model,
            result=result,
            cache_hit=all(hits) if hits else None,
            translate=job.translate,
            languages=detected_languages(job.request, [p.result for p in pieces]),
        )

    async def transcribe_file(
        self, data: bytes, model: str, options: TranscribeOptions
    ) -> EngineResult:
        """A whole file's result: decoded (in place, or by the decoder, which splits a long
        file at pauses), its pieces transcribed and stitched, as a request's file is."""
        deadline = asyncio.get_running_loop().time() + self.config.limits.request_timeout_s
        async with self._deadline(deadline):
            audio = await self._decode(data, self.config.splitting)
        pieces = [piece async for piece in self._pieces(model, audio, options, deadline)]
        return stitch([(p.piece, p.result) for p in pieces], audio.duration_s)

    def results(self, job: Job) -> AsyncGenerator[PieceResult, None]:
        """Each piece's result, in time order, as soon as it and those before it are done."""
        assert job.request.model is not None
        options = transcribe_options(job.request, translate=job.translate)
        return self._pieces(job.request.model, job.audio, options, job.deadline)

    async def _pieces(
        self, model: str, audio: DecodedAudio, options: TranscribeOptions, deadline: float
    ) -> AsyncGenerator[PieceResult, None]:
        """Pieces go to the model as separate items, so its ``@serve.batch`` mixes them with
        other requests' items; at most ``splitting.max_in_flight`` at a time, so a long
        file does not queue all its pieces ahead of a short request. Slices of the decoded
        array are views: only each piece's own samples are serialised to the model.
        """
        samples = audio.samples
        model_config = self.config.model(model)
        in_flight = asyncio.Semaphore(self.config.splitting.max_in_flight)

        async def one(piece: Piece, admitted: bool) -> PieceResult:
            audio = samples[piece[0] : piece[1]]
            async with in_flight:
                result, hit = await self.cache.through(
                    model_config,
                    audio,
                    options,
                    lambda: self._transcribe(model, audio, options, admitted),
                )
            return PieceResult(piece=piece, result=result, cache_hit=hit)

        # Not an asyncio.TaskGroup: a failing child cancels the group's parent task, which,
        # while this generator is suspended at a yield, is the consumer's task wherever it is
        # (PEP 789). Instead the first failure propagates from its own await, and closing
        # the generator cancels the rest and waits for them, retrieving their exceptions.
        # The first piece is admitted by the model's queue (or refused, failing the request);
        # the rest follow it unchecked, so an admitted long file is not refused halfway.
        tasks = [
            asyncio.ensure_future(one(piece, admitted=i > 0))
            for i, piece in enumerate(audio.pieces_to_transcribe())
        ]
        try:
            for task in tasks:
                async with self._deadline(deadline):
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
