"""Text a client sent, made safe to log, to echo back and to parse.

A client chooses every byte of a path, a form field or a WebSocket frame. Three things go
wrong when such text is used as it came: a newline or an escape sequence in a log line
forges a record or repaints an operator's terminal; a long string echoed in every answer
multiplies what the server sends; and JSON nested thousands deep exhausts the parser's
recursion (a ``RecursionError`` where a client's mistake should be a 4xx). Every layer that
takes client text goes through here, so the rules are the same at every door.
"""

from __future__ import annotations

import re

#: No message of any protocol served here nests deeper than 6; parsing stops well before
#: the interpreter's recursion limit (about 1000) could be reached.
MAX_JSON_DEPTH = 32

#: A JSON text at most this long is measured exactly; a longer one (an audio append) may
#: hold at most :data:`MAX_JSON_DEPTH` objects and arrays in all, which a count checks at
#: C speed without reading it in Python.
_MEASURED_JSON_CHARS = 64 * 1024

#: Characters that end or rewrite a log line: C0 and C1 controls (newline, carriage return,
#: escape), DEL, Unicode line and paragraph separators, bidirectional overrides, and the
#: backslash that would make an escape ambiguous.
_UNSAFE = re.compile("[\\\\\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*+"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked where it was cut: for echoing a client's
    string inside a message (JSON escapes what it must; only the length matters there)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit} chars)"


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def for_log(text: str, limit: int = 256) -> str:
    """``text`` as one line of printable text, at most ``limit`` characters of it: controls
    and line breaks written as ``\\xNN`` escapes, so a record stays one record."""
    return _UNSAFE.sub(_escape, clip(text, limit))


class JSONShapeError(ValueError):
    """A JSON text refused before it is parsed: nested too deep, or too many containers."""


def check_json_shape(text: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse, before parsing, JSON that nests deeper than ``max_depth``.

    The count of brackets bounds the depth from above, so most texts need no more than two
    ``str.count`` calls. A short text with more brackets is measured (strings, whose
    brackets are text, taken out first); a long one with more is refused: no append of
    audio holds them, and measuring megabytes in Python would cost a client's CPU to us.
    """
    containers = text.count("[") + text.count("{")
    if containers <= max_depth:
        return
    if len(text) > _MEASURED_JSON_CHARS:
        raise JSONShapeError(
            f"a JSON text over {_MEASURED_JSON_CHARS // 1024} KiB may hold at most "
            f"{max_depth} objects and arrays"
        )
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > max_depth:
        raise JSONShapeError(f"JSON nested deeper than {max_depth} levels")
