"""The memory probe the e2e tests run inside replicas, run here in this process."""

from __future__ import annotations

import mmap

from tests.support.replica_probe import read_own_memory


def test_peak_is_reset_then_follows_what_is_allocated() -> None:
    before = read_own_memory(None, reset_peak=True)
    assert 0 < before.rss_mib <= before.peak_mib < before.rss_mib + 16
    # Fresh anonymous pages, written: a numpy array could reuse pages malloc already holds
    # (after a long test session RSS then grew by 5 MiB for a 64 MiB array).
    with mmap.mmap(-1, 64 << 20) as block:
        block.write(b"\x01" * (64 << 20))
        after = read_own_memory(None, reset_peak=False)
    assert after.peak_mib - before.rss_mib > 60
