"""Client text made safe: one log record stays one line, echoes stay short, deep JSON is
refused before the parser recurses."""

from __future__ import annotations

import json
import time

import pytest

from asr_serve.untrusted import MAX_JSON_DEPTH, JSONShapeError, check_json_shape, clip, for_log


@pytest.mark.parametrize(
    ("text", "logged"),
    [
        ("/v1/models", "/v1/models"),
        ("/\nforged-line", "/\\x0aforged-line"),
        ("/\r\nINFO forged", "/\\x0d\\x0aINFO forged"),
        ("/\x1b[31mred", "/\\x1b[31mred"),
        ("/a\u2028b\u202ec", "/a\\u2028b\\u202ec"),  # line separator, right-to-left override
        ("C:\\x0a", "C:\\\\x0a"),  # a literal backslash cannot pass for an escape
        ("/中文/热词", "/中文/热词"),  # printable text of any script stays as it is
    ],
)
def test_for_log_writes_one_printable_line(text: str, logged: str) -> None:
    assert for_log(text) == logged
    assert "\n" not in for_log(text) and "\x1b" not in for_log(text)


def test_for_log_and_clip_cut_long_text_and_say_so() -> None:
    assert clip("abc", 3) == "abc"
    assert clip("a" * 2_000_000, 10) == "a" * 10 + "…(+1999990 chars)"
    assert len(for_log("\n" * 10_000, 100)) < 600  # cut before escaping: each \n is 4 chars


@pytest.mark.parametrize(
    "text",
    [
        '{"type": "session.update", "session": {"audio": {"input": {"format": {}}}}}',
        '{"prompt": "' + "[" * 5000 + '"}',  # brackets inside a string are text
        # the object and 31 arrays: 32 deep, with brackets in an escaped string beside them
        '{"a": "\\"[[[[", "b": ' + "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1) + "}",
        '{"audio": "' + "A" * 20_000_000 + '"}',  # an audio append: long, shallow
    ],
)
def test_shallow_json_passes(text: str) -> None:
    check_json_shape(text)
    assert len(text) > 20_000_000 or json.loads(text) is not None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * 200_000, "may hold at most"),  # long: counted, never walked
        ("[" * 40 + "]" * 40, "nested deeper than 32"),
        ('{"a": ' * 33 + "1" + "}" * 33, "nested deeper than 32"),
        ('{"audio": "' + "A" * 100_000 + '", "x": ' + "[" * 40 + "]" * 40 + "}", "at most"),
    ],
)
def test_deep_json_is_refused_before_parsing(text: str, says: str) -> None:
    with pytest.raises(JSONShapeError, match=says):
        check_json_shape(text)


def test_the_check_costs_little_whatever_the_frame() -> None:
    """The worst frames a client can send cost milliseconds, not seconds."""
    for text in (
        "[" * 16_000_000,
        "[" * 65_000,
        '"' + "[" * 16_000_000,
        "{" * 32 + "x" * 16_000_000,
    ):
        started = time.perf_counter()
        with pytest.raises(JSONShapeError):
            check_json_shape(text + "[")
        assert time.perf_counter() - started < 0.5
