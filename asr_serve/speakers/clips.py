"""A file's speech regions cut into the clips whose embeddings are clustered.

The decoder's VAD finds speech regions (speech between pauses of ``min_silence_ms``). A
region is usually one speaker's turn, but a reply that follows with a shorter pause lands
in the same region, so regions longer than ``max_clip_s`` are cut into equal clips no
longer than that: a speaker change inside a region is found to within a clip. Clips
shorter than ``min_clip_s`` carry too little voice for a reliable embedding: they are
embedded but take the speaker of the nearest longer clip (:mod:`.clustering`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from asr_serve.audio.decode import Piece


def cut_regions(regions: Sequence[Piece], max_clip_samples: int) -> list[Piece]:
    """Each region as itself, or cut into equal clips of at most ``max_clip_samples``."""
    clips: list[Piece] = []
    for start, end in regions:
        count = max(1, -(-(end - start) // max_clip_samples))
        bounds = [start + (end - start) * i // count for i in range(count + 1)]
        clips += [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    return clips
