"""One request's way through the graph, as a plain class testable without Ray.

The ingress deployment gives it two async callables: ``decode`` (bytes → decoded audio,
the AudioDecoder deployment) and ``transcribe`` (model name, samples, options → result,
that model's ASR deployment). It validates the request, picks the model, applies the
limits and the deadline, and returns the engine's result for rendering.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from asr_serve.api.protocol import TranscriptionRequest
from asr_serve.api.upload import Upload
from asr_serve.audio.decode import DecodedAudio
from asr_serve.config import AppConfig
from asr_serve.engines.base import EngineResult, TranscribeOptions
from asr_serve.errors import (
    DeadlineExceededError,
    InvalidParameterError,
    ModelNotFoundError,
)

logger = logging.getLogger("ray.serve")

DecodeFn = Callable[[bytes], Awaitable[DecodedAudio]]
TranscribeFn = Callable[[str, np.ndarray, TranscribeOptions], Awaitable[EngineResult]]


@dataclass(frozen=True)
class Transcription:
    request: TranscriptionRequest
    model: str
    result: EngineResult


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
    return request.model_copy(update={"model": name})


def transcribe_options(request: TranscriptionRequest) -> TranscribeOptions:
    """Ask the engine only for the timestamps the response will show."""
    return TranscribeOptions(
        language=request.language.lower() if request.language else None,
        prompt=request.prompt,
        temperature=request.temperature,
        segment_timestamps=request.response_format == "verbose_json",
        word_timestamps="word" in request.timestamp_granularities,
    )


class TranscriptionPipeline:
    def __init__(self, config: AppConfig, *, decode: DecodeFn, transcribe: TranscribeFn) -> None:
        self.config = config
        self._decode = decode
        self._transcribe = transcribe

    async def run(self, upload: Upload) -> Transcription:
        """Validate, decode, transcribe; past the deadline raise 504 and cancel the rest."""
        request = parse_request(upload.fields, self.config)
        timeout = self.config.limits.request_timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self._run(request, upload)
        except TimeoutError:
            raise DeadlineExceededError(
                f"request did not finish within {timeout:g} s; try a shorter file or retry later"
            ) from None

    async def _run(self, request: TranscriptionRequest, upload: Upload) -> Transcription:
        assert request.model is not None
        started = time.perf_counter()
        audio = await self._decode(upload.data)
        decoded = time.perf_counter()
        result = await self._transcribe(request.model, audio.samples, transcribe_options(request))
        logger.info(
            "transcribed model=%s audio_s=%.2f codec=%s decode_ms=%.1f asr_ms=%.1f",
            request.model,
            audio.duration_s,
            audio.codec,
            1000 * (decoded - started),
            1000 * (time.perf_counter() - decoded),
        )
        return Transcription(request=request, model=request.model, result=result)
