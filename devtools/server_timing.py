"""Reading a response's ``Server-Timing`` header as a client does."""

from __future__ import annotations

import re

#: One ``name;dur=ms`` entry (W3C Server Timing).
_ENTRY = re.compile(r"([\w-]+);dur=([\d.]+)")


def stages_ms(header: str) -> dict[str, float]:
    """Milliseconds per stage, by name (``total`` among them); ``{}`` for no header."""
    return {name: float(ms) for name, ms in _ENTRY.findall(header)}
