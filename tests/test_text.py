from devtools.text import normalize, wer, word_errors


def test_normalize_ignores_case_and_punctuation() -> None:
    assert normalize("Hello, World!") == ["hello", "world"]
    assert normalize("Ärztin, j'habite à Zürich.") == ["ärztin", "j", "habite", "à", "zürich"]


def test_word_errors_counts_edits() -> None:
    assert word_errors("a b c", "a b c") == 0
    assert word_errors("a b c", "a x c") == 1
    assert word_errors("a b c", "a c") == 1
    assert word_errors("a b", "a b c d") == 2


def test_wer_is_corpus_level() -> None:
    assert wer(["a b", "c d"], ["a b", "c x"]) == 0.25
