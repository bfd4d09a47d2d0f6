"""Settings of live transcription sessions (WebSocket), validated once, defaults in one place.

``LiveConfig`` is the operator's (one per ingress replica); ``ServerVAD`` is what a client may
set per session. Both move into :mod:`asr_serve.config` when live sessions are wired into
Serve, and ``SAMPLE_RATE`` becomes ``asr_serve.config.SAMPLE_RATE``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: The rate every engine reads; live audio is converted to it on arrival.
SAMPLE_RATE = 16_000


class ServerVAD(BaseModel):
    """Turn detection by silero VAD, with the knobs and defaults of OpenAI's ``server_vad``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Speech probability at which a 32 ms frame counts as speech. Within speech, a frame
    #: counts as silence only below ``threshold - 0.15`` (silero's own hysteresis).
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    #: Audio kept before the first speech frame, so a soft onset is not clipped.
    prefix_padding_ms: int = Field(300, ge=0, le=5_000)
    #: Silence that ends an utterance; it is part of the utterance's audio.
    silence_duration_ms: int = Field(500, ge=0, le=10_000)


class LiveConfig(BaseModel):
    """Live sessions of one ingress replica: utterance bounds, partials, limits."""

    model_config = ConfigDict(extra="forbid")

    #: An utterance running this long is cut at its quietest frame in its second half and
    #: committed; the rest goes on as the next utterance. Keep it within the model's window.
    max_utterance_s: float = Field(30.0, ge=2.0, le=600.0)
    #: Re-decode the open utterance for partial results after this much new audio.
    partial_interval_s: float = Field(0.5, ge=0.1, le=30.0)
    #: Partial results at all; off leaves the model to finals only.
    partials: bool = True
    #: Partial decodes running at once per replica; more wait, finals never do.
    max_partials_in_flight: int = Field(4, ge=1, le=1024)
    #: A partial that waited longer than this for its turn is dropped (counted as shed).
    partial_max_wait_s: float = Field(1.0, gt=0.0, le=60.0)
    #: A final decode not done after this long fails its item, so every item ends.
    final_timeout_s: float = Field(60.0, gt=0.0)
    #: No audio for this long closes the session (close code 4000).
    idle_timeout_s: float = Field(60.0, gt=0.0)
    #: Audio one session may send in all; past it the session is closed (close code 4001).
    max_session_audio_s: float = Field(1800.0, gt=0.0)
    #: Largest audio payload of one append, in decoded bytes; 15 MiB as OpenAI's API.
    max_append_bytes: int = Field(15 * 1024 * 1024, ge=1024)
    #: Shortest buffer a client may commit (OpenAI's "expected at least 100ms of audio").
    min_commit_ms: int = Field(100, ge=0)
