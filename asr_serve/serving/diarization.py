"""Who spoke in a file: its clips embedded by the Speakers deployment, clustered here.

The ingress side of diarization, testable without Ray: it is given ``embed`` (clips →
unit embeddings, the Speakers deployment's batched call) and runs beside the file's ASR
pieces, so the two overlap in time. The decoder's VAD gives the speech regions; they are cut
into clips (:mod:`asr_serve.speakers.clips`), embedded in one call, clustered and named
(:mod:`asr_serve.speakers.clustering`) into turns that the stitched transcript's segments
take their speakers from (:mod:`asr_serve.speakers.labels`).

Reference clips (``known_speaker_references[]``, data URLs) are decoded as uploads are and
checked as OpenAI checks them: 2 to 10 s each, at most 4, one name each.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from asr_serve.audio.decode import DecodedAudio
from asr_serve.config import SAMPLE_RATE, LimitsConfig, SpeakersConfig, SplittingConfig
from asr_serve.errors import ASRServeError, InvalidRequestError
from asr_serve.serving.requests import TranscriptionRequest
from asr_serve.speakers.clips import cut_regions
from asr_serve.speakers.clustering import KnownSpeakers, cluster, name_speakers
from asr_serve.speakers.encoders import Embed
from asr_serve.speakers.labels import Turn, turns_of

#: ``(bytes, splitting)``: an upload's bytes to samples (in place, or the decoder).
ReadFn = Callable[[bytes, SplittingConfig], Awaitable[DecodedAudio]]

#: OpenAI's bounds on a reference clip.
REFERENCE_MIN_S = 2.0
REFERENCE_MAX_S = 10.0
_DATA_URL = re.compile(r"^data:([\w.+-]+/[\w.+-]+)?((?:;[\w.+-]+=[\w.+-]+)*);base64,", re.I)
_PARAM = "known_speaker_references"


def reference_bytes(url: str, index: int, limits: LimitsConfig) -> bytes:
    """The audio bytes of one reference's data URL (``data:audio/wav;base64,...``)."""
    match = _DATA_URL.match(url)
    if match is None:
        raise InvalidRequestError(
            f"known_speaker_references[{index}] must be a base64 data URL "
            "(data:audio/wav;base64,...)",
            param=_PARAM,
        )
    payload = url[match.end() :]
    if len(payload) // 4 * 3 > limits.max_reference_bytes + 2:
        raise InvalidRequestError(
            f"known_speaker_references[{index}] is over {limits.max_reference_bytes} bytes of "
            f"audio; send {REFERENCE_MAX_S:g} s at most",
            param=_PARAM,
        )
    try:
        return base64.b64decode(payload, validate=True)
    except binascii.Error:
        raise InvalidRequestError(
            f"known_speaker_references[{index}] is not valid base64", param=_PARAM
        ) from None


class FileDiarizer:
    """Diarizes decoded files; one per ingress replica."""

    def __init__(self, config: SpeakersConfig, embed: Embed) -> None:
        self.config = config
        self._embed = embed

    async def known_speakers(
        self,
        request: TranscriptionRequest,
        read: ReadFn,
        limits: LimitsConfig,
        splitting: SplittingConfig,
        client: str = "",
    ) -> KnownSpeakers | None:
        """The request's reference clips, decoded, checked and embedded as ``client``'s;
        ``None`` if none."""
        if not request.known_speaker_references:
            return None
        clips = await asyncio.gather(
            *(
                self._reference(url, i, read, limits, splitting)
                for i, url in enumerate(request.known_speaker_references)
            )
        )
        vectors = await self._embed(list(clips), client)
        return KnownSpeakers(tuple(request.known_speaker_names), vectors)

    @staticmethod
    async def _reference(
        url: str, index: int, read: ReadFn, limits: LimitsConfig, splitting: SplittingConfig
    ) -> np.ndarray:
        data = reference_bytes(url, index, limits)
        try:
            audio = await read(data, splitting)
        except ASRServeError as exc:
            raise InvalidRequestError(
                f"known_speaker_references[{index}]: {exc.message}", param=_PARAM
            ) from None
        if not REFERENCE_MIN_S <= audio.duration_s <= REFERENCE_MAX_S:
            raise InvalidRequestError(
                f"known_speaker_references[{index}] is {audio.duration_s:.2f} s long; a "
                f"reference must be {REFERENCE_MIN_S:g} to {REFERENCE_MAX_S:g} s",
                param=_PARAM,
            )
        return audio.samples

    async def turns(
        self,
        audio: DecodedAudio,
        known: KnownSpeakers | None,
        count: int | None = None,
        client: str = "",
    ) -> list[Turn]:
        """Who spoke when in the file: its speech regions' clips, embedded as ``client``'s
        and clustered (into ``count`` speakers when the request says how many)."""
        regions: Sequence[tuple[int, int]] = audio.regions or ()
        clips = cut_regions(regions, round(self.config.max_clip_s * SAMPLE_RATE))
        if not clips:
            return []
        vectors = await self._embed([audio.samples[a:b] for a, b in clips], client)
        return await asyncio.to_thread(self._cluster, clips, vectors, known, count)

    def _cluster(
        self,
        clips: list[tuple[int, int]],
        vectors: np.ndarray,
        known: KnownSpeakers | None,
        count: int | None,
    ) -> list[Turn]:
        lengths = [b - a for a, b in clips]
        labels = cluster(
            vectors,
            lengths,
            threshold=self.config.threshold,
            min_length=round(self.config.min_clip_s * SAMPLE_RATE),
            max_speakers=self.config.max_speakers,
            num_speakers=count,
        )
        names = name_speakers(
            vectors,
            lengths,
            labels,
            known,
            min_known_similarity=self.config.min_known_similarity,
        )
        return turns_of(clips, [names[label] for label in labels])
