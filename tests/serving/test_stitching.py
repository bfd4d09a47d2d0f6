"""Stitching pieces' results onto the file's time line, and the pipeline's fan-out."""

from __future__ import annotations

import asyncio

import numpy as np

from asr_serve.audio.decode import DecodedAudio
from asr_serve.config import AppConfig
from asr_serve.engines.base import EngineResult, Segment, TranscribeOptions, Word
from asr_serve.serving.pipeline import TranscriptionPipeline
from asr_serve.serving.requests import Upload
from asr_serve.serving.stitching import join_texts, place, stitch
from tests.serving.test_pipeline import _run

SR = 16_000


def _result(text: str, *segments: Segment) -> EngineResult:
    return EngineResult(text=text, language="en", duration=10.0, segments=list(segments))


def test_times_are_shifted_by_the_offset_and_kept_in_the_piece() -> None:
    piece = _result(
        "a b",
        Segment(
            id=0,
            start=0.5,
            end=12.0,  # past the piece's end: clamped
            text="a b",
            words=[Word(start=0.5, end=1.0, word="a"), Word(start=1.2, end=12.0, word="b")],
        ),
    )
    (segment,) = place((10 * SR, 20 * SR), piece)
    assert (segment.start, segment.end) == (10.5, 20.0)
    assert [(w.start, w.end) for w in segment.words] == [(10.5, 11.0), (11.2, 20.0)]


def test_a_piece_without_segments_becomes_one_segment_spanning_it() -> None:
    assert [(s.start, s.end, s.text) for s in place((SR, 3 * SR), _result(" hi "))] == [
        (1.0, 3.0, "hi")
    ]
    assert place((SR, 3 * SR), _result("")) == []


def test_stitch_renumbers_joins_and_keeps_times_monotonic() -> None:
    first = _result(
        "one two",
        Segment(id=0, start=0.0, end=1.0, text="one"),
        Segment(id=1, start=0.8, end=2.0, text="two"),  # starts before the previous one
    )
    pieces = [
        ((0, 2 * SR), first),
        ((4 * SR, 6 * SR), _result("")),
        ((7 * SR, 9 * SR), _result("three")),
    ]
    result = stitch(pieces, duration=9.5)
    assert result.text == "one two three" and result.duration == 9.5 and result.language == "en"
    assert [s.id for s in result.segments] == [0, 1, 2]
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) == [0.0, 0.8, 7.0]
    assert all(s.end >= s.start for s in result.segments)


def test_no_pieces_is_an_empty_result() -> None:
    assert stitch([], duration=3.0) == EngineResult(text="", duration=3.0)


def test_texts_join_with_spaces_except_inside_cjk() -> None:
    assert join_texts(["hello.", " world ", "", "again"]) == "hello. world again"
    assert join_texts(["今天天气很好。", "我们去公园"]) == "今天天气很好。我们去公园"
    assert join_texts(["我们 go", "公园"]) == "我们 go 公园"


def test_pipeline_fans_pieces_out_bounded_and_stitches_them() -> None:
    config = AppConfig.model_validate(
        {
            "models": [{"name": "m", "engine": "funasr", "model": "x"}],
            "splitting": {"max_in_flight": 2},
        }
    )
    spans = tuple((i * 30 * SR, i * 30 * SR + 28 * SR) for i in range(5))
    running, peak = 0, 0

    async def decode(data: bytes, _: object) -> DecodedAudio:
        return DecodedAudio(np.zeros(150 * SR, np.float32), 150.0, SR, 1, "aac", "mp4", spans)

    async def transcribe(
        model: str, audio: np.ndarray, options: TranscribeOptions, _: bool, __: str
    ):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        # Views of the decoded array, one piece long: no copies of the whole file.
        assert audio.base is not None and len(audio) == 28 * SR
        return EngineResult(text=f"w{peak}", duration=28.0)

    pipeline = TranscriptionPipeline(config, decode=decode, transcribe=transcribe)
    upload = Upload(data=b"x", fields={})
    result = asyncio.run(_run(pipeline, upload)).result
    assert peak == 2
    assert [(s.start, s.end) for s in result.segments] == [
        (30.0 * i, 30.0 * i + 28) for i in range(5)
    ]
    assert len(result.text.split()) == 5 and result.duration == 150.0


def test_a_whole_file_from_a_live_door_takes_the_file_path() -> None:
    """FunASR's runtime door sends whole files through ``transcribe_file``: the server's
    splitting, pieces admitted as a request's (the first checked, the rest following it),
    the door's options as they are, and the pieces stitched on the file's time line."""
    config = AppConfig.model_validate(
        {
            "models": [{"name": "m", "engine": "funasr", "model": "x"}],
            "splitting": {"max_piece_s": 20},
        }
    )
    spans = ((0, 18 * SR), (20 * SR, 38 * SR))
    asked: list[object] = []
    calls: list[tuple[str, int, TranscribeOptions, bool]] = []

    async def decode(data: bytes, splitting: object) -> DecodedAudio:
        asked.append(splitting)
        return DecodedAudio(np.zeros(40 * SR, np.float32), 40.0, SR, 1, "mp3", "mp3", spans)

    async def transcribe(model: str, audio: np.ndarray, options: TranscribeOptions, admitted, _):
        calls.append((model, len(audio), options, admitted))
        word = Word(start=1.0, end=2.0, word=f"w{len(calls)}")
        segment = Segment(id=0, start=1.0, end=2.0, text=word.word, words=[word])
        return EngineResult(text=word.word, duration=len(audio) / SR, segments=[segment])

    pipeline = TranscriptionPipeline(config, decode=decode, transcribe=transcribe)
    options = TranscribeOptions(language="en", word_timestamps=True)
    result, turns = asyncio.run(pipeline.transcribe_file(b"an mp3", "m", options))
    assert turns == []  # speakers not asked
    assert asked == [config.splitting]
    assert sorted(calls, key=lambda c: c[3]) == [
        ("m", 18 * SR, options, False),
        ("m", 18 * SR, options, True),
    ]
    assert result.text in ("w1 w2", "w2 w1") and result.duration == 40.0
    assert [(w.start, w.end) for s in result.segments for w in s.words or []] == [
        (1.0, 2.0),
        (21.0, 22.0),
    ]
