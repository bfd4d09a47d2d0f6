"""funasr's Fun-ASR-Nano realtime protocol messages: the commands we accept, the events and
results we send.

What the connection (:mod:`asr_serve.live.protocols.funasr_realtime`) reads from a client's
text frames and writes back, as pydantic models, with the parsing that is only about their
shape: commands and their arguments, language names.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ValidationError

from asr_serve.engines.languages import FUN_ASR_NANO_LANGUAGES
from asr_serve.live.protocols.connection import ProtocolError
from asr_serve.untrusted import clip

_COMMANDS = "START, STOP, COMMIT, HOTWORDS:<a,b>, LANGUAGE:<xx>"
NOT_ACTIVE = "Session is not active; send START first"  # funasr's own words


# Client side --------------------------------------------------------------------------------


class Command(BaseModel):
    """One text command: ``NAME``, or ``NAME:argument`` for those that take one."""

    name: Literal["START", "STOP", "COMMIT", "HOTWORDS", "LANGUAGE"]
    argument: str | None = None


def parse_command(text: str) -> Command:
    """A text frame as a :class:`Command`, or :class:`ProtocolError` saying what is wrong."""
    name, colon, argument = text.strip().partition(":")
    name = name.strip().upper()
    if name == "POSTPROCESS_HOTWORDS":
        raise ProtocolError(
            "unsupported_command",
            "POSTPROCESS_HOTWORDS is not supported by this server; HOTWORDS biases the model",
        )
    try:
        command = Command(name=name, argument=argument if colon else None)
    except ValidationError:
        command = None
    if command is None or (command.argument is None) != (name in ("START", "STOP", "COMMIT")):
        raise ProtocolError(
            "unknown_command", f"Unknown command {clip(text, 64)!r}; send {_COMMANDS}"
        )
    return command


def language_code(value: str) -> str | None:
    """``LANGUAGE``'s argument as the code the engines take: a code (``en``) or a name in
    Fun-ASR-Nano's prompt vocabulary (``英文``), as funasr's clients send; "" clears it."""
    value = value.strip()
    if not value:
        return None
    if re.fullmatch(r"[A-Za-z]{2,3}", value):
        return value.lower()
    code = next((c for c, name in FUN_ASR_NANO_LANGUAGES.items() if name == value), None)
    if code is None:
        raise ProtocolError(
            "invalid_language",
            f"Unknown language {clip(value, 64)!r}: send an ISO 639-1 code such as en or zh, or a "
            "Fun-ASR-Nano language name such as 中文",
            param="language",
        )
    return code


# Server side --------------------------------------------------------------------------------


class Started(BaseModel):
    event: Literal["started"] = "started"


class HotwordsSet(BaseModel):
    event: Literal["hotwords_set"] = "hotwords_set"
    hotwords: list[str]


class LanguageSet(BaseModel):
    event: Literal["language_set"] = "language_set"
    language: str


class Stopped(BaseModel):
    event: Literal["stopped"] = "stopped"


class ErrorEvent(BaseModel):
    event: Literal["error"] = "error"
    error: str
    code: str


class Sentence(BaseModel):
    text: str
    start: int
    end: int


class Result(BaseModel):
    sentences: list[Sentence]
    partial: str
    partial_start_ms: int
    duration_ms: int
    is_final: bool
