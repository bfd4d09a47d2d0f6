"""The documentation holds to its rules (docs/testing.md) without the service: every fenced
block run or marked, marked blocks checked, links resolved, the configuration page complete
and right. ``tests/e2e/test_quickstart.py`` runs the runnable blocks against the service."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from asr_serve.config import AppConfig
from tests.support import docs
from tests.support.docs import ROOT, Block, Marker

README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
SECURITY = ROOT / "docs" / "security.md"


def _id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", docs.PAGES, ids=_id)
def test_every_block_is_run_or_marked_and_passes_its_checks(page: Path) -> None:
    found = docs.dangling_markers(page)
    for block in docs.blocks(page):
        found += docs.problems(block)
    assert not found, "\n".join(found)


@pytest.mark.parametrize("page", docs.PAGES, ids=_id)
def test_links_resolve(page: Path) -> None:
    assert not docs.broken_links(page)


def test_readme_is_short_and_lists_every_page() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    listed = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", text))
    pages = {f"docs/{page.name}" for page in (ROOT / "docs").glob("*.md")}
    assert pages <= listed, f"pages missing from the README's table: {pages - listed}"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_serve_serves_the_config_the_quickstart_test_runs() -> None:
    """The README's first command is the ``serve run`` that test_quickstart.py starts."""
    plan = subprocess.run(
        ["make", "--no-print-directory", "-n", "serve"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert plan.splitlines()[-1].endswith("/serve run serve_config.cpu.yaml")


# The configuration page against asr_serve/config.py.


def settings(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Every leaf setting under ``model``: its dotted path and default (``required`` if none)."""
    found: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        kind = field.annotation
        inner = getattr(kind, "__args__", (None,))[0]
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found |= settings(kind, f"{path}.")
        elif isinstance(inner, type) and issubclass(inner, BaseModel):
            found |= settings(inner, f"{path}[].")
        elif field.is_required():
            found[path] = "required"
        else:
            found[path] = field.get_default(call_default_factory=True)
    return found


def table_rows(page: Path) -> list[list[str]]:
    """The cells of every table row of ``page`` whose first cell is a code span."""
    rows = []
    for line in page.read_text().splitlines():
        if line.startswith("| `"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def _code(cell: str) -> str | None:
    match = re.search(r"`([^`]*)`", cell)
    return match[1] if match else None


def test_configuration_page_has_every_setting_with_its_default() -> None:
    expected = settings(AppConfig)
    documented: dict[str, str] = {}
    for setting, default, *_ in table_rows(CONFIGURATION):
        path = _code(setting)
        assert path not in documented, f"{path} twice"
        documented[path] = default
    assert set(documented) == set(expected), (
        f"missing: {sorted(set(expected) - set(documented))}; "
        f"no such setting: {sorted(set(documented) - set(expected))}"
    )
    for path, cell in documented.items():
        shown = "required" if cell == "required" else yaml.safe_load(_code(cell) or "~")
        value = expected[path]
        if isinstance(value, Path):
            value = str(value)
        assert shown == value, f"{path}: the page says {cell}, the code {value!r}"


def test_settings_reads_nested_and_listed_models() -> None:
    found = settings(AppConfig)
    assert found["models[].name"] == "required"
    assert found["models[].batching.max_queue_wait_s"] == 10.0
    assert found["limits.max_upload_bytes"] == 25 * 1024 * 1024
    assert found["cors.allow_methods"] == ["GET", "POST"]
    assert "models" not in found and "limits" not in found


def test_security_bounds_name_real_settings() -> None:
    known = settings(AppConfig)
    header = "| bound | default | setting | what a client gets past it |"
    assert header in SECURITY.read_text()
    named = []
    for line in SECURITY.read_text().split(header, 1)[1].splitlines()[2:]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        named += [
            code
            for code in re.findall(r"`([^`]+)`", cells[2])
            if re.match(r"(models\[\]|limits|splitting|auth|clients|cors|cache|live)\.", code)
        ]
    assert named and not [code for code in named if code not in known]


# The checks themselves fail when they should.


def _block(lang: str, text: str, marker: Marker | None = None) -> Block:
    return Block(README, 1, lang, text, marker)


@pytest.mark.parametrize(
    ("block", "complaint"),
    [
        (_block("", "x\n"), "without a language"),
        (_block("bash", "ls\n"), "neither run nor marked"),
        (_block("bash", "ls\n", Marker("skip", "")), "needs its reason"),
        (_block("bash", "ls\n", Marker("sometimes", "")), "unknown marker"),
        (_block("bash", "cat cluster/nothing.yaml\n", Marker("skip", "x")), "no such file"),
        (_block("bash", "python -m benchmarks.nothing\n", Marker("skip", "x")), "no such module"),
        (_block("bash", "make deploy\n", Marker("skip", "x")), "no such target"),
        (_block("console", "$ pytest tests/test_docs.py::nothing\n"), "defines no nothing"),
        (_block("bash", "x\n", Marker("by", "tests/nothing.py::test_x")), "no such test file"),
        (_block("python", "print(\n"), "never closed"),
        (_block("yaml", "args:\n  limits: {max_audio_s: -1}\n", Marker("args", "")), "valid"),
        (_block("yaml", "args:\n  limts: {}\n", Marker("args", "")), "valid"),
        (_block("yaml", "source: somewhere\n", Marker("model", "")), "valid"),
        (_block("bash", "x: 1\n", Marker("model", "")), "marks a yaml block"),
    ],
)
def test_problems_are_found(block: Block, complaint: str) -> None:
    found = docs.problems(block)
    assert found and complaint in found[0], found


def test_good_blocks_pass() -> None:
    assert not docs.problems(_block("text", "client -> server\n"))
    assert not docs.problems(
        _block("yaml", "args:\n  cache: {enabled: true}\n", Marker("args", ""))
    )
    assert not docs.problems(_block("yaml", "model: /m\nsource: local\n", Marker("model", "")))
    assert not docs.problems(
        _block(
            "bash", "python -m benchmarks.run --quick \\\n  --engines funasr\n", Marker("skip", "x")
        )
    )


def test_markers_and_steps_are_parsed(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: skip: needs a GPU -->\n\n```bash\nnvidia-smi\n```\n\n"
        "```console\n$ echo a \\\n  b\na b\n$ true\n```\n\n<!-- docs-test: args -->\ntext\n"
    )
    gpu, shell = docs.blocks(page)
    assert gpu.marker == Marker("skip", "needs a GPU") and not gpu.runs
    assert shell.marker is None and shell.runs
    (echo, echoed), (true, nothing) = docs.console_steps(shell)
    assert (echo.split(), echoed, true, nothing) == (["echo", "a", "b"], ["a b"], "true", [])
    assert docs.dangling_markers(page) == [f"{page}:14: marker before no block"]


def test_python_expected_output_is_its_trailing_comments() -> None:
    code = "# setup\nprint(1)\n# 1\n#\n# ...\n"
    assert docs.python_expected(code) == ["1", "", "..."]
    assert docs.python_expected("print(1)\n") == []


@pytest.mark.parametrize(
    ("expected", "actual", "fits"),
    [
        (['{"text":"Hello, world.","seconds":2.6}'], '{"text":"hello world","seconds":2.5}', True),
        (['{"text":"Hello, world."}'], '{"text":"Hello, word."}', False),
        (
            ['{"text":"Hello world, this is a test."}'],
            '{"text":"Hello world, this is the test."}',
            True,
        ),
        (
            ['{"text":"Hello world, this is a test."}'],
            '{"text":"Hello world, this was the test."}',
            False,
        ),
        (
            ['{"message":"the file is not audio at all"}'],
            '{"message":"the file is not audio at any"}',
            False,
        ),
        (["final: Hello world, this is a test."], "final: Hello world, this is the test.", True),
        (
            ["final: Hello world, this is a test."],
            "final: Hello world, this is a test. Bye now.",
            False,
        ),
        (["final: Hello world."], "final: Hello word.", False),
        (['{"text":"x","seconds":2.6}'], '{"text":"x"}', False),
        (['{"text":"x"}'], '{"text":"x","extra":1}', False),
        (['{"seconds":2.6}'], '{"seconds":4.0}', False),
        (['{"ok":true}'], '{"ok":1}', False),
        (['{"items":[1,2]}'], '{"items":[1]}', False),
        (['{"id":"..."}'], '{"id":42}', True),
        (['{"id":1}'], "not json", False),
        (["00:00:00,000 --> ..."], "00:00:00,000 --> 00:00:02,440", True),
        (["status: RUNNING"], "status: DEPLOY_FAILED", False),
        (["...", "last"], "a\nb\n\nlast", True),
        (["...", "last"], "last", True),
        (["first", "..."], "first", True),
        (["first"], "first\nsecond", False),
        ([], "", True),
    ],
)
def test_output_matching(expected: list[str], actual: str, fits: bool) -> None:
    assert (docs.match_output(expected, actual) is None) is fits
