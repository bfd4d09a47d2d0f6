"""The batch-invariance benchmark's counting, on a real engine and a small corpus."""

from __future__ import annotations

import pytest

from benchmarks import batch_invariance
from benchmarks.batch_invariance import Setting, markdown, measure
from devtools.speech import synthesize
from devtools.text import SENTENCES


@pytest.fixture
def small_corpus(monkeypatch) -> list[str]:
    texts = list(SENTENCES[:3])
    clips = [synthesize(t) for t in texts]
    monkeypatch.setattr(batch_invariance, "_corpus", lambda: (clips, texts))
    return texts


def test_whisper_batches_are_counted_against_alone(small_corpus) -> None:
    setting = Setting(name="whisper", model=batch_invariance._whisper("int8"))
    result = measure(setting, batch_sizes=[2, 3], permutations=2)
    assert result.clips == 3 and [lv.batch_size for lv in result.levels] == [2, 3]
    for level in result.levels:
        assert level.runs == 6  # every clip once per permutation
        assert 0 <= level.changed_runs <= level.runs and level.changed_clips <= 3
        assert level.wer_batched is not None and level.seconds_per_clip > 0
    assert result.wer_alone is not None and result.wer_alone < 0.5  # real speech, heard
    table = markdown([result], "python -m benchmarks.batch_invariance", "test")
    assert table.count("| whisper |") == 2
