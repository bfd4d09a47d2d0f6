"""Streaming silero VAD: one speech probability per 32 ms frame of a live stream.

All sessions of a process share one onnxruntime session of silero's torch-free "sequence"
model (shipped in the ``silero-vad`` wheel, one intra-op thread); each stream keeps only its
own LSTM state and the last 64 samples of context. The sequence model takes all the frames
an append completes in one call, which costs less per frame than a call per frame, and gives,
frame for frame, the same probabilities as the one-frame streaming model. A stream costs a
small fraction of a core (benchmarks/README.md, "Figures behind the code"). onnxruntime's
``run`` is thread-safe, so streams may run on any threads, one call at a time per stream.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

#: Samples per VAD frame at 16 kHz, and the context silero prepends to each frame.
FRAME = 512
_CONTEXT = 64
_STATE_SHAPE = (1, 1, 128)


@functools.cache
def _shared_session() -> Any:
    """The process's one onnxruntime session, loaded on first use."""
    from silero_vad import load_silero_vad

    return load_silero_vad(sequence=True).session


class VADStream:
    """One live stream's VAD: feed 16 kHz samples, get the probabilities of completed frames.

    The ``i``-th probability it ever returns is that of samples ``[i * FRAME, (i + 1) * FRAME)``
    of everything fed to it.
    """

    def __init__(self) -> None:
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        """Probabilities of the frames ``samples`` completes (samples of a partial frame wait)."""
        audio = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        n = len(audio) // FRAME
        self._pending = audio[n * FRAME :].copy()
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        frames = audio[: n * FRAME].reshape(n, FRAME)
        block = np.empty((n, _CONTEXT + FRAME), dtype=np.float32)
        block[:, _CONTEXT:] = frames
        block[0, :_CONTEXT] = self._context
        block[1:, :_CONTEXT] = frames[:-1, -_CONTEXT:]
        self._context = frames[-1, -_CONTEXT:].copy()
        # Loaded by the first stream that scores a frame, on its worker thread, not the loop.
        probs, self._h, self._c = _shared_session().run(
            ["speech_probs", "hn", "cn"], {"input": block, "h": self._h, "c": self._c}
        )
        return probs.reshape(-1)
