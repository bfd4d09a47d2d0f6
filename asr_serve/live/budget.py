"""What a live connection and each of its sessions may send, so that neither can queue more
work than it is served nor hold a slot for ever.

A connection may send ``live.max_session_audio_s`` of audio in all (:class:`AudioBudget`),
whichever sessions it opens; past it the connection ends (4001).

A live session's finals go to the models' fair queues under its client's name, as a file's
pieces do (:mod:`asr_serve.engines.fair`); this bounds the session itself. Its audio may
run at most ``live.max_audio_ahead_s`` ahead of real time: the session's audio clock runs
from the time of its first audio, each chunk moves it on by its length, and a gap in the
stream is not saved up (the clock never runs behind the wall clock). While
``live.max_finals_in_flight`` of its finals are being transcribed, it takes no audio. And
its audio counts against its client's audio a minute, when the config sets one. Past any of
them the chunk is refused (the protocol's ``rate_limit_exceeded`` error) and not taken:
nothing of it enters the session, so a commit after it has only what was taken before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

from asr_serve.config import LiveConfig
from asr_serve.errors import PayloadTooLargeError, RateLimitError


def _no_quota(seconds: float) -> None:
    return None


@dataclass(frozen=True)
class LiveClient:
    """Who a connection's sessions belong to, as the ingress knows them."""

    #: The client's name: its share of the models (``""``: none in particular).
    id: str = ""
    #: Hold one of the client's live sessions for the connection; raises
    #: :class:`~asr_serve.errors.RateLimitError` when the client has its maximum open.
    hold_session: Callable[[], AbstractContextManager[object]] = nullcontext
    #: Count seconds of the client's audio; raises ``RateLimitError`` past its quota.
    take_audio: Callable[[float], None] = _no_quota


#: A connection's client when the ingress names none (sessions in process, tests).
NO_CLIENT = LiveClient()


class SessionBudget:
    """One session's audio ahead of real time and finals in flight. Plain, event loop only."""

    def __init__(
        self,
        config: LiveConfig,
        take_audio: Callable[[float], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_ahead_s = config.max_audio_ahead_s
        self.max_finals = config.max_finals_in_flight
        self._take_audio = take_audio
        self._clock = clock
        #: Where the audio taken so far ends, on the wall clock (``clock()`` time).
        self._audio_until = 0.0
        self.finals_in_flight = 0

    def take(self, seconds: float) -> None:
        """Take a chunk of ``seconds`` of audio, or raise ``RateLimitError`` (not taken)."""
        if self.finals_in_flight >= self.max_finals:
            raise RateLimitError(
                f"this session has {self.finals_in_flight} transcriptions running, its "
                "maximum; audio is taken again once one is done",
                param="audio",
                retry_after_s=1.0,
            )
        now = self._clock()
        until = max(self._audio_until, now) + seconds
        ahead = until - now
        if ahead > self.max_ahead_s:
            raise RateLimitError(
                f"this audio would put the session {ahead:.1f} s ahead of real time, over "
                f"its {self.max_ahead_s:g} s; send audio at the pace it was recorded",
                param="audio",
                retry_after_s=ahead - self.max_ahead_s,
            )
        self._take_audio(seconds)
        self._audio_until = until

    def final_started(self) -> None:
        self.finals_in_flight += 1

    def final_ended(self) -> None:
        self.finals_in_flight -= 1


class SessionAudioLimitError(PayloadTooLargeError):
    """The session has taken ``max_session_audio_s`` of audio; it ends."""

    code = "session_audio_limit"


class AudioBudget:
    """Audio one connection may send in all. A connection may open session after session
    (``START`` again on funasr's realtime door): they share its budget, so a new one does
    not start the count again."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self.used_s = 0.0

    def check(self, seconds: float) -> None:
        """Refuse ``seconds`` more if they would pass the limit (nothing is taken)."""
        if self.used_s + seconds > self.limit_s:
            raise SessionAudioLimitError(
                f"this session has reached its limit of {self.limit_s:g} s of audio; open a "
                "new session to go on",
                param="audio",
            )

    def take(self, seconds: float) -> None:
        self.used_s += seconds
