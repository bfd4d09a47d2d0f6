"""The memory probe the e2e tests run inside replicas, run here in this process."""

from __future__ import annotations

import numpy as np

from asr_serve.testing.replica_probe import read_own_memory


def test_peak_is_reset_then_follows_what_is_allocated() -> None:
    before = read_own_memory(None, reset_peak=True)
    assert 0 < before.rss_mib <= before.peak_mib < before.rss_mib + 16
    block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, touched
    after = read_own_memory(None, reset_peak=False)
    del block
    assert after.peak_mib - before.rss_mib > 60
