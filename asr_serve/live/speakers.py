"""A live session's speakers: each committed utterance embedded and given a stable label.

The utterance's audio goes to the Speakers deployment beside its final decode (so the two
overlap, and utterances of many sessions ride in one batch there); its embedding is then
assigned to the session's speakers in commit order (:class:`~asr_serve.speakers.online.
OnlineSpeakers`), so labels are the same whatever order the embeddings come back in.
"""

from __future__ import annotations

import logging

import numpy as np

from asr_serve.config import SAMPLE_RATE, SpeakersConfig
from asr_serve.speakers.encoders import Embed
from asr_serve.speakers.online import OnlineSpeakers

logger = logging.getLogger("ray.serve")


class SessionSpeakers:
    """One session's speakers; its event loop only."""

    def __init__(self, embed: Embed, config: SpeakersConfig, client: str = "") -> None:
        self._embed = embed
        #: Whose share of the encoder the session's utterances take.
        self._client = client
        self._online = OnlineSpeakers(
            threshold=config.live_threshold, max_speakers=config.max_speakers
        )

    async def embed(self, audio: np.ndarray) -> np.ndarray | None:
        """The utterance's embedding; ``None`` if it failed (the item completes unlabelled)."""
        try:
            return (await self._embed([audio], self._client))[0]
        except Exception as exc:  # the transcript matters more than its label
            logger.warning("speaker embedding of a live utterance failed: %r", exc)
            return None

    def label(self, embedding: np.ndarray | None, samples: int) -> str | None:
        """The utterance's speaker; call in commit order."""
        if embedding is None:
            return None
        return self._online.assign(embedding, samples / SAMPLE_RATE)
