"""Turn detection on made-up frame probabilities: starts, stops, hysteresis, overlong cuts."""

from __future__ import annotations

import numpy as np

from asr_serve.config import ServerVAD
from asr_serve.live.turns import Cut, Pause, Resume, Start, Stop, Turn, TurnDetector
from asr_serve.live.vad import FRAME

VAD = ServerVAD()  # threshold 0.5, prefix 300 ms (4800 samples), silence 500 ms (8000)
LONG = 10**9


def _p(*runs: tuple[float, int]) -> np.ndarray:
    """Probabilities from (value, frames) runs."""
    return np.concatenate([np.full(n, v, dtype=np.float32) for v, n in runs])


def _bounds(turns: list[Turn]) -> list[Turn]:
    """Where utterances start and end: the turns the tests below are about."""
    return [t for t in turns if not isinstance(t, Pause | Resume)]


def test_a_pause_inside_an_utterance_is_reported_and_so_is_its_end() -> None:
    """Pauses tell the session the speaker went quiet (no partials then), without ending
    the utterance unless they last silence_duration_ms."""
    detector = TurnDetector(VAD, LONG)
    turns = detector.push(_p((0.9, 10), (0.1, 10), (0.9, 10), (0.1, 16)))
    assert turns == [Start(0), Pause(10 * FRAME), Resume(), Pause(30 * FRAME), Stop(46 * FRAME)]


def test_speech_starts_at_its_first_frame_minus_the_prefix_padding() -> None:
    detector = TurnDetector(VAD, LONG)
    assert _bounds(detector.push(_p((0.1, 20)))) == []
    assert _bounds(detector.push(_p((0.9, 3)))) == [Start(20 * FRAME - 4800)]
    assert detector.utterance_start == 20 * FRAME - 4800


def test_padding_never_reaches_before_the_session_or_the_last_utterance() -> None:
    detector = TurnDetector(VAD, LONG)
    assert _bounds(detector.push(_p((0.1, 2), (0.9, 1)))) == [Start(0)]
    turns = _bounds(detector.push(_p((0.1, 16), (0.9, 1))))
    stop = 19 * FRAME
    assert turns == [Stop(stop), Start(stop)]  # next speech right after: no overlap


def test_speech_stops_once_silence_lasts_silence_duration_included() -> None:
    detector = TurnDetector(VAD, LONG)
    _bounds(detector.push(_p((0.9, 10))))
    # 500 ms is 15.6 frames: the 16th silent frame ends the utterance, at its end.
    assert _bounds(detector.push(_p((0.1, 15)))) == []
    assert _bounds(detector.push(_p((0.1, 1)))) == [Stop(26 * FRAME)]
    assert detector.utterance_start is None


def test_a_pause_shorter_than_silence_duration_does_not_stop() -> None:
    detector = TurnDetector(VAD, LONG)
    assert _bounds(detector.push(_p((0.9, 10), (0.1, 10), (0.9, 10), (0.1, 10)))) == [Start(0)]


def test_hysteresis_between_threshold_and_threshold_minus_015() -> None:
    detector = TurnDetector(VAD, LONG)
    _bounds(detector.push(_p((0.9, 5))))
    # 0.4 is under the threshold but over 0.35: it does not start a silence ...
    assert _bounds(detector.push(_p((0.4, 40)))) == []
    # ... nor does it end one that started; only speech at the threshold does.
    assert _bounds(detector.push(_p((0.1, 8), (0.4, 7)))) == []
    assert _bounds(detector.push(_p((0.4, 1)))) == [Stop(61 * FRAME)]


def test_an_overlong_utterance_is_cut_at_its_quietest_frame_in_the_second_half() -> None:
    max_samples = 4 * 16_000  # 125 frames
    detector = TurnDetector(VAD, max_samples)
    # A deeper dip in the first half is not used: that would leave a short first part.
    probs = _p((0.9, 20), (0.0, 3), (0.9, 60), (0.3, 3), (0.9, 60))
    turns = _bounds(detector.push(probs))
    assert turns == [Start(0), Cut(84 * FRAME + FRAME // 2)]  # middle of the 0.3 run
    assert detector.utterance_start == 84 * FRAME + FRAME // 2


def test_manual_turns_never_start_or_stop_but_are_cut_when_too_long() -> None:
    detector = TurnDetector(None, 2 * 16_000)  # 62.5 frames
    assert detector.utterance_start == 0
    turns = _bounds(detector.push(_p((0.9, 40), (0.1, 30), (0.9, 10))))
    assert len(turns) == 1 and isinstance(turns[0], Cut)
    assert 40 * FRAME <= turns[0].at <= 63 * FRAME  # in the silence


def test_reset_forgets_the_utterance_and_the_audio_before_it() -> None:
    detector = TurnDetector(VAD, LONG)
    _bounds(detector.push(_p((0.9, 10))))
    detector.reset(12 * FRAME)
    assert detector.utterance_start is None
    assert _bounds(detector.push(_p((0.9, 1)))) == [Start(12 * FRAME)]


def test_keep_from_holds_the_padding_while_waiting_for_speech() -> None:
    detector = TurnDetector(VAD, LONG)
    _bounds(detector.push(_p((0.1, 100))))
    assert detector.keep_from == 100 * FRAME - 4800


def test_switching_turn_detection_keeps_an_open_utterance_open() -> None:
    detector = TurnDetector(VAD, LONG)
    _bounds(detector.push(_p((0.1, 20), (0.9, 5))))
    start = detector.utterance_start
    detector.configure(None, start)
    assert detector.utterance_start == start
    _bounds(detector.push(_p((0.1, 50))))  # manual: silence does not end it
    assert detector.utterance_start == start
    detector.configure(VAD, start)
    assert _bounds(detector.push(_p((0.1, 16))))[-1] == Stop(91 * FRAME)
