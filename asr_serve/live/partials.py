"""Which part of a growing utterance's re-decoded text is stable enough to send.

The engines do not stream: a partial result is a fresh decode of the whole open utterance,
and its last words may change as more audio arrives. Clients of append-only protocols
(OpenAI's transcription deltas, FunASR's online text) cannot take text back, so only text
two hypotheses in a row agree on, the last word of the newest one excepted, is sent, and
only once, and only while it extends what was sent (once the model revises sent text, the
rest waits for the final transcript, which replaces it). Text is compared in units: words,
and single characters in scripts written without spaces (CJK: the characters Unicode gives
an East Asian width of wide or full).
"""

from __future__ import annotations

import re
import unicodedata

#: A unit is a word with the whitespace before it; each CJK character is a unit of its own.
_UNITS = re.compile(r"\s*(?:\S)")


def units(text: str) -> list[str]:
    """``text`` cut into units that join back to it exactly."""
    out: list[str] = []
    for match in _UNITS.finditer(text):
        piece = match.group()
        char = piece[-1]
        if out and not piece[0].isspace() and not _wide(char) and not _wide(out[-1][-1]):
            out[-1] += piece  # continues the word before it
        else:
            out.append(piece)
    return out


#: Punctuation a model ends a hypothesis with because its audio ends there (CJK punctuation
#: is a unit of its own, so it never hides an agreeing character).
_CLOSING = ".,!?;:…"


def _wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


class StableText:
    """One utterance's sent text; feed it hypotheses, get back what may be sent as a delta."""

    def __init__(self) -> None:
        #: Everything sent so far, in order: the deltas joined.
        self.sent = ""
        self._sent_units = 0
        self._last: list[str] = []

    def hypothesis(self, text: str) -> str:
        """The delta a new partial hypothesis makes stable ("" if none)."""
        new = units(text.strip())
        last = self._last
        if last:
            # Where its audio ended the model closed a sentence ("Please call Stella.");
            # the newer one goes on ("Please call Stella and"): they agree on the word.
            last = [*last[:-1], last[-1].rstrip(_CLOSING)]
        agreed = 0
        for a, b in zip(last, new[:-1], strict=False):
            if a != b:
                break
            agreed += 1
        self._last = new
        if agreed <= self._sent_units or "".join(new[: self._sent_units]) != self.sent:
            return ""  # nothing new, or the model revised what was sent: the final will tell
        delta = "".join(new[self._sent_units : agreed])
        self._sent_units = agreed
        self.sent += delta
        return delta

    def final(self, text: str) -> str | None:
        """The last delta before ``text`` is final: its rest when it extends what was sent,
        ``None`` when it diverges (the final text replaces the deltas)."""
        text = text.strip()
        if not text.startswith(self.sent):
            return None
        rest = text[len(self.sent) :]
        self.sent = text
        return rest
