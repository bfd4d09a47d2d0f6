"""srt and vtt renderings, validated by strict third-party parsers."""

from __future__ import annotations

import datetime

import srt
import webvtt

from asr_serve.api.formats import render
from asr_serve.api.subtitles import to_srt, to_vtt
from asr_serve.engines.base import EngineResult, Segment

SEGMENTS = [
    Segment(id=0, start=0.0, end=1.5, text="hello world"),
    Segment(id=1, start=2.0, end=2.5, text="   "),  # no text: no cue
    Segment(id=2, start=3599.9996, end=3725.25, text="a < b & c --> d\n\nnext line"),
]


def test_srt_parses_strictly_with_absolute_times() -> None:
    cues = list(srt.parse(to_srt(SEGMENTS), ignore_errors=False))
    assert [c.index for c in cues] == [1, 2]
    assert cues[0].start == datetime.timedelta(0) and cues[0].end == datetime.timedelta(seconds=1.5)
    assert cues[1].start == datetime.timedelta(hours=1)  # rounded to the millisecond
    assert cues[1].end == datetime.timedelta(hours=1, minutes=2, seconds=5, milliseconds=250)
    assert cues[1].content == "a < b & c -> d\nnext line"


def test_vtt_parses_strictly_and_escapes_markup() -> None:
    body = to_vtt(SEGMENTS)
    assert body.startswith("WEBVTT\n\n")
    captions = webvtt.from_string(body, strict=True).captions
    assert [(c.start, c.end) for c in captions] == [
        ("00:00:00.000", "00:00:01.500"),
        ("01:00:00.000", "01:02:05.250"),
    ]
    assert captions[0].text == "hello world"
    assert captions[1].raw_text == "a &lt; b &amp; c -&gt; d\nnext line"


def test_no_segments_is_a_valid_empty_file() -> None:
    assert list(srt.parse(to_srt([]), ignore_errors=False)) == []
    assert webvtt.from_string(to_vtt([]), strict=True).captions == []


def test_render_serves_both_with_their_media_types() -> None:
    result = EngineResult(text="hello world", duration=1.5, segments=SEGMENTS[:1])
    assert render(result, "srt", model="m").body.decode() == to_srt(SEGMENTS[:1])
    vtt = render(result, "vtt", model="m")
    assert vtt.media_type == "text/vtt" and vtt.body.decode() == to_vtt(SEGMENTS[:1])
