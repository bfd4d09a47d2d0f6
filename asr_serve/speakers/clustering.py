"""A file's clips grouped into speakers, and the groups named by reference clips.

Agglomerative clustering (average linkage on cosine distance, scipy) of the clips long
enough to carry a voice: two groups merge while their clips are, on average, more alike
than ``threshold``; a count hint stops it at that many speakers instead, and ``max_speakers``
bounds it either way. Short clips then join the speaker whose centroid they are closest to.
With reference clips (``known_speaker_names[]`` / ``known_speaker_references[]``) speakers
and references are paired one to one, most alike first (the Hungarian method), and a
speaker takes its reference's name when they are at least ``min_known_similarity`` alike;
the rest are ``A``, ``B``, … in order of first appearance, as OpenAI labels speakers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from asr_serve.speakers.labels import letter


@dataclass(frozen=True)
class KnownSpeakers:
    """Names and the unit embeddings of their reference clips, in the request's order."""

    names: tuple[str, ...]
    embeddings: np.ndarray  # (len(names), dim)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def cluster(
    embeddings: np.ndarray,
    lengths: Sequence[int],
    *,
    threshold: float,
    min_length: int,
    max_speakers: int,
    num_speakers: int | None = None,
) -> np.ndarray:
    """A cluster index per clip, numbered in order of first appearance (clips in time order).

    ``lengths``: each clip's length, which weighs it in its speaker's centroid; clips
    shorter than ``min_length`` do not shape the clusters (unless no clip is longer).
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    count = len(embeddings)
    if count == 0:
        return np.zeros(0, dtype=int)
    weights = np.asarray(lengths, dtype=np.float64)
    reliable = np.flatnonzero(weights >= min_length)
    if len(reliable) == 0:
        reliable = np.arange(count)
    if len(reliable) == 1:
        groups = np.ones(1, dtype=int)
    else:
        tree = linkage(embeddings[reliable], method="average", metric="cosine")
        if num_speakers is not None:
            groups = fcluster(tree, t=min(num_speakers, len(reliable)), criterion="maxclust")
        else:
            groups = fcluster(tree, t=1.0 - threshold, criterion="distance")
            if groups.max() > max_speakers:
                groups = fcluster(tree, t=max_speakers, criterion="maxclust")
    labels = np.full(count, -1)
    labels[reliable] = groups - 1
    centroids = _centroids(embeddings, weights, labels, groups.max())
    rest = np.flatnonzero(labels < 0)
    if len(rest):
        labels[rest] = np.argmax(embeddings[rest] @ centroids.T, axis=1)
    return _by_appearance(labels)


def _centroids(
    embeddings: np.ndarray, weights: np.ndarray, labels: np.ndarray, groups: int
) -> np.ndarray:
    return _unit(
        np.stack(
            [
                (embeddings[labels == g] * weights[labels == g, None]).sum(axis=0)
                for g in range(groups)
            ]
        )
    )


def _by_appearance(labels: np.ndarray) -> np.ndarray:
    order: dict[int, int] = {}
    for label in labels:
        order.setdefault(int(label), len(order))
    return np.array([order[int(label)] for label in labels], dtype=int)


def name_speakers(
    embeddings: np.ndarray,
    lengths: Sequence[int],
    labels: np.ndarray,
    known: KnownSpeakers | None,
    *,
    min_known_similarity: float,
) -> list[str]:
    """Each cluster's name: a known speaker's, or the next letter in order of appearance."""
    groups = int(labels.max()) + 1 if len(labels) else 0
    weights = np.maximum(np.asarray(lengths, dtype=np.float64), 1.0)
    centroids = _centroids(embeddings, weights, labels, groups) if groups else embeddings
    names: list[str | None] = [None] * groups
    if known is not None and len(known.names) and groups:
        from scipy.optimize import linear_sum_assignment

        similarity = centroids @ known.embeddings.T  # (groups, known)
        rows, cols = linear_sum_assignment(-similarity)
        for g, k in zip(rows, cols, strict=True):
            if similarity[g, k] >= min_known_similarity:
                names[g] = known.names[k]
    unnamed = iter(range(groups))
    return [name if name is not None else letter(next(unnamed)) for name in names]
