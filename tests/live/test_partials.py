"""The stable-prefix policy: deltas are append-only, never taken back, and join to the text."""

from __future__ import annotations

from asr_serve.live.partials import StableText, units


def test_units_are_words_with_their_spaces_and_single_cjk_characters() -> None:
    assert units("Hello world, this") == ["Hello", " world,", " this"]
    assert units("今天天气。") == ["今", "天", "天", "气", "。"]
    assert units("我们 use Python语言") == ["我", "们", " use", " Python", "语", "言"]
    for text in ("Hello world, this", "今天天气。", "我们 use Python语言", "a  b"):
        assert "".join(units(text)) == text


def test_a_word_is_sent_once_two_hypotheses_agree_on_it_and_it_is_not_the_last() -> None:
    stable = StableText()
    assert stable.hypothesis("The quick") == ""  # nothing to agree with yet
    assert stable.hypothesis("The quick brown") == "The quick"
    assert stable.hypothesis("The quick brown") == ""  # "brown" is the newest's last word
    assert stable.hypothesis("The quick brown fox jumps") == " brown"
    assert stable.sent == "The quick brown"


def test_a_changed_word_is_not_sent_and_sent_text_is_never_revised() -> None:
    stable = StableText()
    stable.hypothesis("The quick brown fog")
    assert stable.hypothesis("The quick brown fox jumps") == "The quick brown"
    # The model changes its mind about a word it sent: nothing more is sent, even once
    # the new hypotheses agree, since it would not join what was sent.
    assert stable.hypothesis("A quick brown fox jumps over") == ""
    assert stable.hypothesis("A quick brown fox jumps over the") == ""
    assert stable.final("A quick brown fox jumps over the lazy dog.") is None
    assert stable.sent == "The quick brown"


def test_the_sentence_end_a_hypothesis_closes_with_does_not_block_agreement() -> None:
    stable = StableText()
    stable.hypothesis("Please call Stella.")
    assert stable.hypothesis("Please call Stella and ask") == "Please call Stella"
    assert stable.hypothesis("Please call Stella and ask her to bring") == " and ask"


def test_punctuation_that_moves_inside_the_text_keeps_a_word_unstable() -> None:
    stable = StableText()
    stable.hypothesis("Hello world. This")
    assert stable.hypothesis("Hello world, this is") == "Hello"
    assert stable.hypothesis("Hello world, this is a test") == " world, this is"


def test_a_final_that_extends_the_deltas_sends_the_rest() -> None:
    stable = StableText()
    stable.hypothesis("Hello world, this")
    assert stable.hypothesis("Hello world, this is") == "Hello world, this"
    assert stable.final("  Hello world, this is a test. ") == " is a test."
    assert stable.sent == "Hello world, this is a test."


def test_a_final_that_diverges_sends_no_delta() -> None:
    stable = StableText()
    stable.hypothesis("The quick brown fog")
    stable.hypothesis("The quick brown fog jumps")
    assert stable.final("A quick brown fox jumps.") is None


def test_a_final_with_nothing_sent_is_one_delta() -> None:
    assert StableText().final("Hello.") == "Hello."


def test_cjk_is_compared_by_character() -> None:
    stable = StableText()
    stable.hypothesis("今天天")
    assert stable.hypothesis("今天天气不") == "今天天"
    assert stable.hypothesis("今天天气不错") == "气不"
    assert stable.final("今天天气不错。") == "错。"
