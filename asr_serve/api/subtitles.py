"""Subtitle renderings of a transcript: SubRip (``srt``) and WebVTT (``vtt``).

One cue per segment, times absolute in the uploaded file. Segments without text are left
out: both formats require a cue to have a payload. WebVTT text escapes ``&``, ``<`` and ``>``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from asr_serve.engines.base import Segment


def to_srt(segments: Sequence[Segment]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``, a blank line after each."""
    cues = [
        f"{n}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{_payload(s.text)}\n"
        for n, s in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(cues)


def to_vtt(segments: Sequence[Segment]) -> str:
    """WebVTT: the ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues."""
    cues = [
        f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n"
        f"{html.escape(_payload(s.text), quote=False)}\n"
        for s in _cues(segments)
    ]
    return "\n".join(["WEBVTT\n", *cues])


def _cues(segments: Sequence[Segment]) -> list[Segment]:
    return [s for s in segments if s.text.strip()]


def _payload(text: str) -> str:
    """A cue's text without blank lines (they end a cue) or ``-->`` (it starts one)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    return "\n".join(line for line in lines if line).replace("-->", "->")


def _timestamp(seconds: float, decimal_mark: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{millis:03d}"
