"""Speaker embeddings are asked for as the request's or the session's client, so the Speakers
deployment's fair queue shares its encoder among clients as the ASR replicas share theirs."""

from __future__ import annotations

import asyncio

import numpy as np

from asr_serve.audio.decode import DecodedAudio
from asr_serve.config import SpeakersConfig
from asr_serve.live.speakers import SessionSpeakers
from asr_serve.serving.diarization import FileDiarizer


class _Embeddings:
    """The Speakers deployment's ``embed``: records whose clips it was given."""

    def __init__(self) -> None:
        self.clients: list[str] = []

    async def __call__(self, clips: list[np.ndarray], client: str) -> np.ndarray:
        self.clients.append(client)
        vectors = np.zeros((len(clips), 4), np.float32)
        vectors[:, 0] = 1.0
        return vectors


def test_a_file_s_clips_are_embedded_as_its_client_s() -> None:
    embed = _Embeddings()
    samples = np.zeros(4 * 16_000, np.float32)
    audio = DecodedAudio(samples, 4.0, 16_000, 1, "pcm_s16le", "wav", regions=((0, 64_000),))
    turns = asyncio.run(FileDiarizer(SpeakersConfig(), embed).turns(audio, None, client="key:a"))
    assert turns and embed.clients == ["key:a"]


def test_a_live_utterance_is_embedded_as_its_session_s_client_s() -> None:
    embed = _Embeddings()
    speakers = SessionSpeakers(embed, SpeakersConfig(), "addr:10.0.0.7")
    vector = asyncio.run(speakers.embed(np.zeros(16_000, np.float32)))
    assert vector is not None and embed.clients == ["addr:10.0.0.7"]
