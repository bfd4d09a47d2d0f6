"""Put the results of a file's pieces back together on the file's own time line.

A long file is transcribed as pieces (``asr_serve.audio.splitting``); each piece's result has
times relative to the piece. Stitching shifts every segment and word by its piece's offset,
keeps them inside the piece (so times are absolute and never go backwards), renumbers the
segments and joins the texts. A piece whose engine gave text but no segments (no timestamps
were asked for, or the model has none) becomes one segment spanning the piece.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

from asr_serve.audio.decode import Piece
from asr_serve.config import SAMPLE_RATE
from asr_serve.engines.base import EngineResult, Segment


def place(piece: Piece, result: EngineResult) -> list[Segment]:
    """One piece's segments in absolute seconds, clamped to the piece (ids from 0)."""
    offset, end = piece[0] / SAMPLE_RATE, piece[1] / SAMPLE_RATE
    if not result.segments:
        text = result.text.strip()
        return [Segment(id=0, start=offset, end=end, text=text)] if text else []

    def at(t: float) -> float:
        return round(min(max(offset + t, offset), end), 3)

    # Copies, so whatever else the engine gave (log-probabilities) stays with them.
    return [
        s.model_copy(
            update={
                "id": i,
                "start": at(s.start),
                "end": max(at(s.start), at(s.end)),
                "words": (
                    None
                    if s.words is None
                    else [
                        w.model_copy(
                            update={"start": at(w.start), "end": max(at(w.start), at(w.end))}
                        )
                        for w in s.words
                    ]
                ),
            }
        )
        for i, s in enumerate(result.segments)
    ]


def stitch(pieces: Sequence[tuple[Piece, EngineResult]], duration: float) -> EngineResult:
    """One result for the whole file from its pieces, given in time order."""
    segments: list[Segment] = []
    last_start = 0.0
    for piece, result in pieces:
        for segment in place(piece, result):
            # Within a piece an engine's segment times should not go backwards; make sure.
            start = max(segment.start, last_start)
            segments.append(
                segment.model_copy(
                    update={"id": len(segments), "start": start, "end": max(start, segment.end)}
                )
            )
            last_start = start
    language = next((r.language for _, r in pieces if r.language), None)
    return EngineResult(
        text=join_texts(r.text for _, r in pieces),
        language=language,
        duration=duration,
        segments=segments,
    )


def join_texts(texts: Iterable[str]) -> str:
    """Join piece texts, with a space except between two CJK characters."""
    joined = ""
    for text in (t.strip() for t in texts):
        if text:
            joined += separator(joined, text) + text
    return joined


def separator(before: str, after: str) -> str:
    """What goes between two pieces' texts: nothing at the start or inside CJK text."""
    if not before or not after:
        return ""
    return "" if _is_cjk(before[-1]) and _is_cjk(after[0]) else " "


def _is_cjk(char: str) -> bool:
    """Han and kana, written without spaces between words, and their punctuation."""
    name = unicodedata.name(char, "")
    return name.startswith(("CJK", "HIRAGANA", "KATAKANA", "IDEOGRAPHIC", "FULLWIDTH"))
