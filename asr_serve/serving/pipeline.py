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
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from asr_serve.audio.decode import DecodedAudio, Piece
from asr_serve.config import AppConfig, SplittingConfig
from asr_serve.engines.base import EngineCapabilities, EngineResult, TranscribeOptions
from asr_serve.errors import DeadlineExceededError, InvalidRequestError
from asr_serve.serving.cache import NO_CACHE, ResultCache
from asr_serve.serving.clients import ANONYMOUS, Client, ClientLimits
from asr_serve.serving.diarization import FileDiarizer
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
from asr_serve.speakers.clustering import KnownSpeakers
from asr_serve.speakers.labels import SpeakerSegment, Turn, attribute
from asr_serve.timing import RENDER, timed

#: OpenAI's diarizing model needs ``chunking_strategy`` for audio longer than this.
DIARIZE_UNCHUNKED_MAX_S = 30.0


class DecodeFn(Protocol):
    """Upload bytes to samples; ``regions`` asks for the VAD's speech regions too."""

    def __call__(
        self, data: bytes, splitting: SplittingConfig, regions: bool = False
    ) -> Awaitable[DecodedAudio]: ...


#: ``(model, samples, options, admitted, client)``; ``admitted``: an earlier piece of the
#: request was admitted, so the model must not refuse this one halfway (admission is per
#: request); ``client``: whose share of the model the piece takes.
TranscribeFn = Callable[[str, np.ndarray, TranscribeOptions, bool, str], Awaitable[EngineResult]]
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
    #: ``diarized_json``: the transcript's segments with their speakers.
    speakers: list[SpeakerSegment] | None = None


@dataclass(frozen=True)
class PieceResult:
    """One piece of a file (the whole file when it was not split) and its result."""

    piece: Piece
    result: EngineResult
    cache_hit: bool | None
    #: ``diarized_json``: who spoke when in the whole file.
    turns: list[Turn] | None = None


@dataclass(frozen=True)
class Job:
    """A validated, decoded request and the event-loop time by which it must be done."""

    request: TranscriptionRequest
    audio: DecodedAudio
    deadline: float
    #: ``/v1/audio/translations``: English text, by a model that can translate.
    translate: bool = False
    #: ``diarized_json``'s reference clips, embedded.
    known: KnownSpeakers | None = None
    client: Client = ANONYMOUS

    @property
    def diarize(self) -> bool:
        return self.request.response_format == "diarized_json"

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
        diarizer: FileDiarizer | None = None,
        limits: ClientLimits | None = None,
    ) -> None:
        self.config = config
        self._decode = decode
        self.diarizer = diarizer
        self._transcribe = transcribe
        self._capabilities = capabilities
        self.cache: ResultCache = cache or NO_CACHE
        self.limits = limits or ClientLimits(config.clients)

    async def start(
        self, upload: Upload, *, translate: bool = False, client: Client = ANONYMOUS
    ) -> Job:
        """Validate and decode (the decoder also plans a long file's pieces), then count
        the audio against the client's audio a minute."""
        if translate:
            request = parse_translation(upload.fields, self.config)
            name = await self._translating_model(request.model)
            request = request.model_copy(update={"model": name})
        else:
            request = parse_request(upload.fields, self.config)
        splitting = splitting_for(request, self.config.splitting)
        deadline = asyncio.get_running_loop().time() + self.config.limits.request_timeout_s
        known = None
        async with self._deadline(deadline):
            if request.response_format == "diarized_json":
                audio, known = await self._diarized(request, upload.data, splitting, client)
            else:
                audio = await self._decode(upload.data, splitting)
        self.limits.take_audio(client.id, audio.duration_s)
        return Job(
            request=request,
            audio=audio,
            deadline=deadline,
            translate=translate,
            known=known,
            client=client,
        )

    async def _diarized(
        self,
        request: TranscriptionRequest,
        data: bytes,
        splitting: SplittingConfig,
        client: Client,
    ) -> tuple[DecodedAudio, KnownSpeakers | None]:
        """The file with its speech regions, and the request's reference clips embedded."""
        if self.diarizer is None:
            raise InvalidRequestError(
                "diarized_json: speaker diarization is off on this server",
                param="response_format",
            )
        audio = await self._decode(data, splitting, True)
        if request.chunking_strategy is None and audio.duration_s > DIARIZE_UNCHUNKED_MAX_S:
            raise InvalidRequestError(
                f"chunking_strategy is required with diarized_json for audio longer than "
                f"{DIARIZE_UNCHUNKED_MAX_S:g} s (this is {audio.duration_s:.1f} s); send "
                "chunking_strategy=auto",
                param="chunking_strategy",
            )
        known = await self.diarizer.known_speakers(
            request, self._decode, self.config.limits, splitting, client.id
        )
        return audio, known

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
        turns = pieces[0].turns if pieces else None
        return Transcription(
            request=job.request,
            model=job.request.model,
            result=result,
            cache_hit=all(hits) if hits else None,
            translate=job.translate,
            languages=detected_languages(job.request, [p.result for p in pieces]),
            speakers=None if turns is None else attribute(result.segments, turns, "A"),
        )

    async def transcribe_file(
        self,
        data: bytes,
        model: str,
        options: TranscribeOptions,
        speakers: bool = False,
        *,
        client: Client = ANONYMOUS,
    ) -> tuple[EngineResult, list[Turn]]:
        """A whole file's result: decoded (in place, or by the decoder, which splits a long
        file at pauses), its pieces transcribed and stitched, as a request's file is; with
        ``speakers``, who spoke when, found beside the pieces as for ``diarized_json``."""
        diarizer = self.diarizer if speakers else None
        if speakers and diarizer is None:
            raise InvalidRequestError("speaker diarization is off on this server", param="model")
        deadline = asyncio.get_running_loop().time() + self.config.limits.request_timeout_s
        async with self._deadline(deadline):
            splitting = self.config.splitting
            audio = await (
                self._decode(data, splitting, True) if speakers else self._decode(data, splitting)
            )
        self.limits.take_audio(client.id, audio.duration_s)
        turns_of = (
            None if diarizer is None else lambda: diarizer.turns(audio, None, client=client.id)
        )
        pieces = [p async for p in self._pieces(model, audio, options, deadline, client, turns_of)]
        result = stitch([(p.piece, p.result) for p in pieces], audio.duration_s)
        return result, (pieces[0].turns or []) if pieces else []

    def results(self, job: Job) -> AsyncGenerator[PieceResult, None]:
        """Each piece's result, in time order, as soon as it and those before it are done."""
        assert job.request.model is not None
        options = transcribe_options(job.request, translate=job.translate)
        diarizer = self.diarizer if job.diarize else None
        turns = (
            None
            if diarizer is None
            else lambda: diarizer.turns(
                job.audio, job.known, job.request.num_speakers, job.client.id
            )
        )
        return self._pieces(job.request.model, job.audio, options, job.deadline, job.client, turns)

    async def _pieces(
        self,
        model: str,
        audio: DecodedAudio,
        options: TranscribeOptions,
        deadline: float,
        client: Client,
        turns_of: Callable[[], Awaitable[list[Turn]]] | None = None,
    ) -> AsyncGenerator[PieceResult, None]:
        """Pieces go to the model as separate items, so its ``@serve.batch`` mixes them with
        other requests' items; at most ``splitting.max_in_flight`` at a time, so a long
        file does not queue all its pieces ahead of a short request. Slices of the decoded
        array are views: only each piece's own samples are serialised to the model.
        ``turns_of`` (diarization) runs beside the pieces; the first result waits for it.
        """
        samples = audio.samples
        model_config = self.config.model(model)
        in_flight = asyncio.Semaphore(self.config.splitting.max_in_flight)
        scope = client.cache_scope(self.config.cache.shared)

        async def one(piece: Piece, admitted: bool) -> PieceResult:
            audio = samples[piece[0] : piece[1]]
            async with in_flight:
                result, hit = await self.cache.through(
                    model_config,
                    audio,
                    options,
                    lambda: self._transcribe(model, audio, options, admitted, client.id),
                    scope,
                )
            return PieceResult(piece=piece, result=result, cache_hit=hit)

        # Not an asyncio.TaskGroup: a failing child cancels the group's parent task, which,
        # while this generator is suspended at a yield, is the consumer's task wherever it is
        # (PEP 789). Instead the first failure propagates from its own await, and closing
        # the generator cancels the rest and waits for them, retrieving their exceptions.
        # The first piece is admitted by the model's queue (or refused, failing the request);
        # the rest follow it unchecked, so an admitted long file is not refused halfway.
        diarizing = None if turns_of is None else asyncio.ensure_future(turns_of())
        tasks = [
            asyncio.ensure_future(one(piece, admitted=i > 0))
            for i, piece in enumerate(audio.pieces_to_transcribe())
        ]
        try:
            turns = None
            for task in tasks:
                async with self._deadline(deadline):
                    result = await task
                    if diarizing is not None and turns is None:
                        turns = await diarizing
                yield dataclasses.replace(result, turns=turns)
        finally:
            everything = [*tasks, *([diarizing] if diarizing is not None else [])]
            for task in everything:
                task.cancel()
            await asyncio.gather(*everything, return_exceptions=True)

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
