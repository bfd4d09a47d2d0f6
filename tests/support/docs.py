"""The documentation's fenced blocks: found, sorted into run or marked, checked and run.

The rules are docs/testing.md's ("The documentation's examples"): ``console`` and ``python``
blocks run against the served quickstart, ``text`` blocks are pictures, and any other block
carries a marker on the line before it saying why it is not run here (``skip``), which test
runs it (``by``), or which config model validates it (``args``, ``model``).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt

from asr_serve.config import AppConfig, ModelConfig
from devtools.text import normalize, word_errors

ROOT = Path(__file__).resolve().parents[2]

#: The pages whose blocks are held to the rules.
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "cluster" / "README.md",
        ROOT / "tests" / "README.md",
        ROOT / "benchmarks" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
)

MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<kind>[a-z]+)\b:?\s*(?P<arg>.*?)\s*-->")
MARKER_KINDS = {"skip", "by", "args", "model"}
#: Blocks run against the served quickstart unless marked ``skip``.
RUN_LANGS = {"console", "python"}
SHELL_LANGS = {"bash", "sh", "console"}
#: Pictures and log excerpts: neither run nor marked.
PICTURE_LANGS = {"text"}
#: A ``console`` command's timeout, and a ``python`` block's.
RUN_TIMEOUT_S = 180
#: Numbers in JSON output agree when within this share of each other, or this far apart.
REL_TOL, ABS_TOL = 0.2, 0.05
#: A transcript (a JSON ``text`` or ``transcript``, or a line of plain text) of at least
#: :data:`TRANSCRIPT_MIN_WORDS` words may differ from the page's by one word in ten, at
#: least one: the same audio gives another word on another CPU (FFmpeg's resampler and
#: CTranslate2 take other SIMD paths, the last bits of the samples and logits move, and
#: the beam search tips over: "this is a test" on one machine, "this is the test" on an
#: AVX-512 one).
TRANSCRIPT_KEYS = frozenset({"text", "transcript"})
TRANSCRIPT_MIN_WORDS = 5
TRANSCRIPT_WORD_ERRORS = 0.1
ELLIPSIS = "..."


@dataclass(frozen=True)
class Marker:
    kind: str
    arg: str


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    #: 1-based line of the opening fence.
    line: int
    lang: str
    text: str
    marker: Marker | None

    @property
    def where(self) -> str:
        return f"{_shown(self.page)}:{self.line}"

    @property
    def runs(self) -> bool:
        """Run against the served quickstart (not only checked)."""
        return self.lang in RUN_LANGS and (self.marker is None or self.marker.kind != "skip")


def _shown(page: Path) -> Path:
    return page.relative_to(ROOT) if page.is_relative_to(ROOT) else page


def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark")


def blocks(page: Path) -> list[Block]:
    """Every fenced block of ``page``, with the marker on the line before it, if any."""
    source = page.read_text()
    lines = source.splitlines()
    found = []
    for token in _parser().parse(source):
        if token.type != "fence" or token.map is None:
            continue
        start = token.map[0]
        marker = None
        before = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        if match := MARKER.fullmatch(before):
            marker = Marker(match["kind"], match["arg"])
        lang = token.info.split()[0] if token.info.strip() else ""
        found.append(Block(page, start + 1, lang, token.content, marker))
    return found


def dangling_markers(page: Path) -> list[str]:
    """Markers that stand before no block (a block moved away from its marker)."""
    marked = {b.line for b in blocks(page) if b.marker}
    lines = page.read_text().splitlines()
    problems = []
    for number, line in enumerate(lines, 1):
        if MARKER.fullmatch(line.strip()):
            after = next((n for n in range(number + 1, len(lines) + 1) if lines[n - 1].strip()), 0)
            if after not in marked:
                problems.append(f"{_shown(page)}:{number}: marker before no block")
    return problems


def problems(block: Block) -> list[str]:
    """What is wrong with ``block`` short of running it: its disposition, then the checks
    its language and marker allow without the service."""
    where = block.where
    if not block.lang:
        return [f"{where}: a block without a language; name it (console, python, text, ...)"]
    marker = block.marker
    if marker is None and block.lang not in RUN_LANGS | PICTURE_LANGS:
        return [
            f"{where}: a {block.lang} block that is neither run nor marked: make it a console "
            "or python block the suite runs, or mark it (docs/testing.md)"
        ]
    if marker is not None and marker.kind not in MARKER_KINDS:
        return [f"{where}: unknown marker {marker.kind!r}"]
    if marker is not None and marker.kind == "skip" and not marker.arg:
        return [f"{where}: a skip needs its reason"]
    if marker is not None and marker.kind == "by":
        return [f"{where}: {p}" for p in _test_id_problems(marker.arg)] + _content_problems(block)
    if marker is not None and marker.kind in ("args", "model"):
        if block.lang != "yaml":
            return [f"{where}: {marker.kind} marks a yaml block, not {block.lang}"]
        try:
            _validate_config(block.text, marker.kind)
        except Exception as exc:
            return [f"{where}: not a valid {marker.kind} fragment: {exc}"]
        return []
    return _content_problems(block)


def _content_problems(block: Block) -> list[str]:
    if block.lang == "python":
        try:
            compile(block.text, block.where, "exec")
        except SyntaxError as exc:
            return [f"{block.where}: {exc}"]
    elif block.lang == "yaml":
        try:
            yaml.safe_load(block.text)
        except yaml.YAMLError as exc:
            return [f"{block.where}: {exc}"]
    elif block.lang in SHELL_LANGS:
        return [f"{block.where}: {p}" for c in commands(block) for p in command_problems(c)]
    return []


def _validate_config(text: str, kind: str) -> None:
    """An ``args`` fragment merged into the CPU quickstart's args, or a ``model`` fragment
    merged into the production config's first model, validated as the service would."""
    fragment = yaml.safe_load(text)
    if kind == "args":
        if set(fragment) != {"args"}:
            raise ValueError("an args fragment has the one key `args`")
        base = _app(ROOT / "serve_config.cpu.yaml")["args"]
        AppConfig.model_validate(_merged(base, fragment["args"]))
    else:
        base = _app(ROOT / "serve_config.yaml")["args"]["models"][0]
        ModelConfig.model_validate(_merged(base, fragment))


def _app(config: Path) -> dict[str, Any]:
    (app,) = yaml.safe_load(config.read_text())["applications"]
    return app


def _merged(base: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


# Links.


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives ``page``'s headings: lower case, punctuation dropped, spaces
    as hyphens, a repeated one numbered."""
    tokens = _parser().parse(page.read_text())
    seen: dict[str, int] = {}
    for i, token in enumerate(tokens):
        if token.type == "heading_open":
            slug = re.sub(r"[^\w\- ]", "", tokens[i + 1].content.lower()).replace(" ", "-")
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            if count:
                seen[f"{slug}-{count}"] = 1
    return set(seen)


def broken_links(page: Path) -> list[str]:
    """Relative links and images of ``page`` whose file, or heading, does not exist."""
    found = []
    for token in _parser().parse(page.read_text()):
        for child in token.children or []:
            target = child.attrs.get("href") or child.attrs.get("src")
            if not isinstance(target, str) or re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                found.append(f"{_shown(page)}: {target}: no such file")
            elif anchor and file.suffix == ".md" and anchor not in anchors(file):
                found.append(f"{_shown(page)}: {target}: no such heading")
    return found


# Shell blocks.


def _logical_lines(text: str) -> list[str]:
    """Lines, with one ending in a backslash joined to the next (a continued command)."""
    joined: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return joined + ([pending] if pending else [])


def commands(block: Block) -> list[str]:
    """A shell block's commands: a ``console`` block's ``$ `` lines, every line of another."""
    if block.lang == "console":
        return [command for command, _ in console_steps(block)]
    lines = [line.strip() for line in _logical_lines(block.text)]
    return [line for line in lines if line and not line.startswith("#")]


def _top_level() -> set[str]:
    return {p.name for p in ROOT.iterdir() if not p.name.startswith(".git")}


def command_problems(command: str) -> list[str]:
    """A command's references to this repository, each checked: paths exist, ``python -m``
    modules are found, ``make`` targets are the Makefile's, test ids name tests."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        words = command.split()
    found = []
    top = _top_level()
    for i, word in enumerate(words):
        for token in re.split(r"[=@]", word):
            token = token.rstrip(",;")
            if "::" in token:
                found += _test_id_problems(token)
            elif token.split("/")[0] in top and not (ROOT / token).exists():
                found.append(f"{token}: no such file in the repository")
        if word == "-m" and i > 0 and Path(words[i - 1]).name.startswith("python"):
            module = words[i + 1]
            if importlib.util.find_spec(module) is None:
                found.append(f"python -m {module}: no such module")
    if words[:1] == ["make"]:
        targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
        found += [f"make {t}: no such target" for t in words[1:] if t not in targets]
    return found


def _test_id_problems(test_id: str) -> list[str]:
    path, *names = test_id.split("::")
    file = ROOT / path
    if not file.is_file():
        return [f"{test_id}: no such test file"]
    source = file.read_text()
    return [
        f"{test_id}: {file.name} defines no {name}"
        for name in names
        if not re.search(rf"^\s*(async def|def|class) {re.escape(name)}\b", source, re.M)
    ]


# Running blocks and comparing their output.


def run_page(page: Path, workdir: Path, ray_address: str | None = None) -> None:
    """Run ``page``'s runnable blocks in order in ``workdir``; the first wrong one fails.
    ``ray_address``: the cluster a block's ``ray.init(address="auto")`` must find, where
    another runs on the machine too (it would pick either)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    if ray_address is not None:
        env["RAY_ADDRESS"] = ray_address
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    for block in blocks(page):
        if not block.runs:
            continue
        if block.lang == "console":
            for command, expected in console_steps(block):
                output = _run(["bash", "-c", command], workdir, env, block)
                _check(block, f"$ {command}", expected, output)
        else:
            script = workdir / f"block_{block.line}.py"
            script.write_text(block.text)
            output = _run([sys.executable, script.name], workdir, env, block)
            _check(block, "the python block", python_expected(block.text), output)


def _run(argv: list[str], cwd: Path, env: dict[str, str], block: Block) -> Run:
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=RUN_TIMEOUT_S,
    )
    return Run(proc.returncode, proc.stdout)


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str


def _check(block: Block, what: str, expected: list[str], run: Run) -> None:
    if not expected:
        assert run.returncode == 0, f"{block.where}: {what} failed:\n{run.output}"
        return
    mismatch = match_output(expected, run.output)
    assert mismatch is None, f"{block.where}: {what}: {mismatch}\n--- output:\n{run.output}"


def console_steps(block: Block) -> list[tuple[str, list[str]]]:
    """Each command of a console block with the output lines shown after it."""
    steps: list[tuple[str, list[str]]] = []
    for line in _logical_lines(block.text):
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def python_expected(text: str) -> list[str]:
    """A python block's expected output: its trailing ``# `` comment lines."""
    lines = text.rstrip().splitlines()
    expected = []
    while lines and lines[-1].startswith("#"):
        expected.append(lines.pop().removeprefix("#").removeprefix(" "))
    return expected[::-1]


def match_output(expected: list[str], actual: str) -> str | None:
    """``None`` when ``actual`` fits ``expected`` line by line (blank lines aside), else why
    not. A line of ``...`` stands for any lines; ``...`` within a line for any text."""
    want = [line for line in expected if line.strip()]
    have = [line for line in actual.splitlines() if line.strip()]

    def fits(w: int, h: int) -> bool:
        if w == len(want):
            return h == len(have)
        if want[w].strip() == ELLIPSIS:
            return any(fits(w + 1, k) for k in range(h, len(have) + 1))
        return h < len(have) and line_matches(want[w], have[h]) and fits(w + 1, h + 1)

    if fits(0, 0):
        return None
    return "the output does not fit:\n" + "\n".join(want)


def line_matches(expected: str, actual: str) -> bool:
    """JSON by shape (:func:`json_matches`), any other line by its words."""
    want = _json(expected)
    if want is not None:
        have = _json(actual)
        return have is not None and json_matches(want, have)
    if ELLIPSIS not in expected:
        return transcript_matches(expected, actual)
    pattern = ".*".join(re.escape(" ".join(normalize(part))) for part in expected.split(ELLIPSIS))
    return re.fullmatch(pattern, " ".join(normalize(actual))) is not None


def transcript_matches(expected: str, actual: str) -> bool:
    """The same words, or as many as :data:`TRANSCRIPT_WORD_ERRORS` of them different in a
    transcript long enough to have a word to spare."""
    want = normalize(expected)
    if want == normalize(actual):
        return True
    allowed = max(1, int(len(want) * TRANSCRIPT_WORD_ERRORS))
    return len(want) >= TRANSCRIPT_MIN_WORDS and word_errors(expected, actual) <= allowed


def _json(line: str) -> Any:
    if not line.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def json_matches(want: Any, have: Any, key: str = "") -> bool:
    """The same keys and lengths; strings by their words (``"..."``: any value), a
    transcript's (under ``key`` in :data:`TRANSCRIPT_KEYS`) as :func:`transcript_matches`;
    numbers within :data:`REL_TOL` or :data:`ABS_TOL`; the rest equal."""
    if want == ELLIPSIS:
        return True
    if isinstance(want, dict):
        return (
            isinstance(have, dict)
            and want.keys() == have.keys()
            and all(json_matches(want[k], have[k], k) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(have, list)
            and len(want) == len(have)
            and all(json_matches(w, h) for w, h in zip(want, have, strict=True))
        )
    if isinstance(want, str) and key in TRANSCRIPT_KEYS:
        return isinstance(have, str) and transcript_matches(want, have)
    if isinstance(want, str):
        return isinstance(have, str) and normalize(want) == normalize(have)
    if isinstance(want, bool) or want is None:
        return want is have
    if isinstance(want, int | float):
        return (
            isinstance(have, int | float)
            and not isinstance(have, bool)
            and math.isclose(want, have, rel_tol=REL_TOL, abs_tol=ABS_TOL)
        )
    return want == have
