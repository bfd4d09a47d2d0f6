"""The page at ``GET /``: one static HTML file that tries the public API from a browser."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def index_html() -> str:
    """The page, read once from the package data."""
    return files(__package__).joinpath("index.html").read_text(encoding="utf-8")
