"""Transcript comparison for tests and benchmarks: normalisation and word error rate."""

from __future__ import annotations

import re

#: Sentences with known text for accuracy checks (espeak speaks them; nothing is downloaded).
SENTENCES: tuple[str, ...] = (
    "the quick brown fox jumps over the lazy dog",
    "hello world",
    "please call stella and ask her to bring these things with her from the store",
    "the birch canoe slid on the smooth planks",
    "glue the sheet to the dark blue background",
    "it is easy to tell the depth of a well",
    "these days a chicken leg is a rare dish",
    "rice is often served in round bowls",
    "the juice of lemons makes fine punch",
    "the box was thrown beside the parked truck",
    "four hours of steady work faced us",
    "a large size in stockings is hard to sell",
)


def normalize(text: str) -> list[str]:
    """Lower-case words without punctuation, so 'Hello, world.' equals 'hello world', in any
    alphabet ('Ärztin' keeps its letters); an apostrophe splits French elisions ("j'habite")
    as Whisper's spacing of them varies."""
    return re.sub(r"[^\w ]+|_", " ", text.lower()).split()


def word_errors(reference: str, hypothesis: str) -> int:
    """Levenshtein distance over normalised words (substitutions + insertions + deletions)."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus word error rate: total word errors over total reference words."""
    errors = sum(word_errors(r, h) for r, h in zip(references, hypotheses, strict=True))
    return errors / max(1, sum(len(normalize(r)) for r in references))
