"""Peak memory of decoding plus VAD for a long upload: ``python -m benchmarks.decoder_memory S``.

Measures what the decoder tier adds on top of the upload's bytes for ``S`` seconds of
speech (a 16 kHz 16-bit WAV built from the long test recording): the peak resident set
during ``decode_audio`` and the VAD, minus the resident set just before. Linux only: the
peak is reset through ``/proc/self/clear_refs`` once the input is built.
"""

from __future__ import annotations

import gc
import io
import json
import sys
import time
import wave

import numpy as np

from asr_serve.audio.decode import decode_audio
from asr_serve.audio.splitting import PieceSplitter
from asr_serve.config import SAMPLE_RATE, SplittingConfig
from devtools.long_audio import long_recording


def measure(seconds: float) -> dict[str, float]:
    """Sizes in MiB and times in seconds for one decode + VAD of ``seconds`` of audio."""
    data = _wav(seconds)
    splitter = PieceSplitter(SplittingConfig())
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = _status_bytes("VmRSS")
    started = time.perf_counter()
    audio = decode_audio(data, max_duration_s=seconds + 1)
    decoded = time.perf_counter()
    pieces = splitter.split(audio.samples) or ()
    done = time.perf_counter()
    mib = 2**20
    return {
        "audio_s": audio.duration_s,
        "upload_mib": len(data) / mib,
        "float32_mib": audio.samples.nbytes / mib,
        "peak_growth_mib": (_status_bytes("VmHWM") - before) / mib,
        "decode_s": decoded - started,
        "vad_s": done - decoded,
        "pieces": len(pieces),
    }


def _wav(seconds: float) -> bytes:
    """The long recording repeated to ``seconds``, as 16-bit WAV bytes."""
    minute = long_recording(60).samples
    reps = int(np.ceil(seconds * SAMPLE_RATE / len(minute)))
    pcm = np.tile(minute, reps)[: round(seconds * SAMPLE_RATE)]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes((pcm * 32767).astype(np.int16).tobytes())
    return buf.getvalue()


def _status_bytes(key: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(key + ":"))
    return int(line.split()[1]) * 1024  # reported in kB


if __name__ == "__main__":
    print(json.dumps(measure(float(sys.argv[1])), indent=1))
