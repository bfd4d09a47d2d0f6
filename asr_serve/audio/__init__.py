"""Audio input: decode uploads to the 16 kHz mono float32 the engines consume."""

from asr_serve.audio.decode import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    TARGET_SAMPLE_RATE,
    DecodedAudio,
    decode_audio,
    sniff_is_probably_not_audio,
)

__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "TARGET_SAMPLE_RATE",
    "DecodedAudio",
    "decode_audio",
    "sniff_is_probably_not_audio",
]
