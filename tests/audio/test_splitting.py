"""Splitting long audio into pieces: the merge plan alone, then silero VAD on espeak speech."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from asr_serve.audio.decode import DecodedAudio
from asr_serve.audio.splitting import PieceSplitter, plan_pieces
from asr_serve.config import SAMPLE_RATE as SR
from asr_serve.config import SplittingConfig
from devtools.long_audio import long_recording


def _s(*pairs: tuple[float, float]) -> list[tuple[int, int]]:
    return [(round(a * SR), round(b * SR)) for a, b in pairs]


def test_regions_that_fit_one_window_make_one_piece() -> None:
    assert plan_pieces(_s((1, 3), (5, 9)), 10 * SR) == _s((1, 9))


def test_cut_at_the_longest_pause_in_the_window_second_half() -> None:
    # Pauses after 4 s (2 s long, first half), 7 s (0.5 s) and 9 s (1 s): the cut goes
    # after 9 s, the longest pause in the second half, not the longer one after 4 s.
    regions = _s((0, 4), (6, 7), (7.5, 9), (10, 12), (12.2, 15))
    assert plan_pieces(regions, 10 * SR) == _s((0, 9), (10, 15))


def test_first_half_pause_used_when_the_second_half_has_none() -> None:
    regions = _s((0, 2), (3, 11))  # 8 s of speech after the only pause
    assert plan_pieces(regions, 10 * SR) == _s((0, 2), (3, 11))


def test_only_an_overlong_run_of_speech_is_split_hard() -> None:
    pieces = plan_pieces(_s((0, 1), (2, 27)), 10 * SR)
    assert pieces[0] == (0, SR)
    # 25 s of speech without a pause: three equal, contiguous parts.
    assert all(abs((b - a) - 25 * SR / 3) < 1 for a, b in pieces[1:])
    assert pieces[1][0] == 2 * SR and pieces[-1][1] == 27 * SR
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(pieces[1:]))


def test_every_piece_fits_and_pieces_are_ordered() -> None:
    rng = np.random.default_rng(1)
    edges = np.cumsum(rng.uniform(0.1, 6, 400))
    regions = _s(*zip(edges[::2], edges[1::2], strict=True))
    pieces = plan_pieces(regions, 10 * SR)
    assert all(0 < b - a <= 10 * SR for a, b in pieces)
    assert all(b <= c for (_, b), (c, _) in itertools.pairwise(pieces))
    # Every region lies in exactly one piece: silence between pieces only.
    assert all(sum(a <= r0 and r1 <= b for a, b in pieces) == 1 for r0, r1 in regions)


def test_no_speech_is_no_pieces_and_unsplit_is_the_whole_file() -> None:
    assert plan_pieces([], 10 * SR) == []
    whole = DecodedAudio(np.zeros(1234, np.float32), 1234 / SR, SR, 1, "pcm_f32le", "wav")
    assert whole.pieces_to_transcribe() == ((0, 1234),)
    assert dataclasses.replace(whole, pieces=()).pieces_to_transcribe() == ()


@pytest.fixture(scope="module")
def splitter() -> PieceSplitter:
    return PieceSplitter(SplittingConfig(max_piece_s=20))


def test_short_audio_is_not_split(splitter: PieceSplitter) -> None:
    assert splitter.split(long_recording(15).samples[: 20 * SR]) is None


def test_silero_finds_each_sentence_and_cuts_only_in_pauses(splitter) -> None:
    recording = long_recording(90)
    regions = splitter.speech_regions(recording.samples)
    assert len(regions) == len(recording.speech)
    pad = splitter.config.speech_pad_ms * SR // 1000
    for (found_start, found_end), (start, end) in zip(regions, recording.speech, strict=True):
        assert abs(found_start - (start - pad)) < 0.15 * SR
        assert abs(found_end - (end + pad)) < 0.15 * SR

    pieces = splitter.split(recording.samples)
    assert pieces is not None and len(pieces) >= 90 / 20
    assert all(b - a <= splitter.max_samples for a, b in pieces)
    for (_, end), (start, _) in itertools.pairwise(pieces):
        # Each cut lies within one true pause (give or take the padding).
        assert any(e - pad <= end and start <= s + pad for e, s in _gaps(recording.speech))


def _gaps(speech: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    return [(end, start) for (_, end), (start, _) in itertools.pairwise(speech)]


def test_decode_and_vad_memory_is_bounded() -> None:
    """Ten minutes in a fresh process: the peak grows by about two float32 copies, no more.

    ``python -m benchmarks.decoder_memory 3600`` gives the one-hour figure in benchmarks/README.md.
    """
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.decoder_memory", "600"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    figures = json.loads(out.stdout)
    assert figures["pieces"] >= 600 / 28
    # Decoding holds the resampled frames and their concatenation once; the VAD adds
    # blocks of ~16 s. A float64 copy alone would add 2 x float32.
    assert figures["peak_growth_mib"] < 2.5 * figures["float32_mib"] + 32
