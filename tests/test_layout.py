"""The package's layering: one direction between its packages, no import cycles, config is
the leaf, engines stay light."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import asr_serve

PACKAGE = Path(asr_serve.__file__).parent
REPO = PACKAGE.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, type_checking: bool) -> set[str]:
    """``asr_serve`` modules ``path`` imports, at module level or inside functions; those
    under ``if TYPE_CHECKING:`` only with ``type_checking``."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if (
            not type_checking
            and isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test)
        ):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("asr_serve"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asr_serve"):
            assert node.module is not None
            for alias in node.names:  # `from asr_serve.api import auth` imports a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
#: What each module imports at runtime: the edges an import cycle would run along.
GRAPH = {name: _imports(path, type_checking=False) & set(MODULES) for name, path in MODULES.items()}
#: Every import, type-only ones too: what each module depends on.
DEPENDS = {
    name: _imports(path, type_checking=True) & set(MODULES) for name, path in MODULES.items()
}

#: Each layer and the layers it may import, top to bottom: ``app`` builds the graph from the
#: Serve deployments (Ray glue), which serve the HTTP and WebSocket routes (``api``) over the
#: request flow (``serving``) and the live sessions (``live``), which use who spoke
#: (``speakers``: embeddings, clustering, labels), the engines and the audio decoding and
#: splitting (``engines``, ``audio``), over the settings, the API's errors, the rules for
#: client text (``untrusted``) and the request's stage clock (``timing``, which every layer
#: that runs part of a request records into). A layer may import itself; never one above
#: it, nor its neighbour on its level.
_LEAVES = {"config", "errors", "untrusted", "timing"}
ALLOWED = {
    "app": {"deployments", "config"},
    "deployments": {"api", "serving", "live", "speakers", "engines", "audio", *_LEAVES},
    "api": {"serving", "live", "speakers", "engines", "audio", "web", "version", *_LEAVES},
    "serving": {"speakers", "engines", "audio", "version", *_LEAVES},
    "live": {"speakers", "engines", "audio", *_LEAVES},
    "speakers": {"engines", "audio", "config", "errors"},
    "engines": {"config", "errors", "timing"},
    "audio": {"config", "errors"},
    "web": set(),
    "config": set(),
    "errors": set(),
    "untrusted": set(),
    "timing": set(),
    "version": set(),
}


def _layer(module: str) -> str:
    """``asr_serve.api.upload`` -> ``api``; the package itself (its version) -> ``version``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "version"


def back_edges(depends: dict[str, set[str]]) -> list[str]:
    """Imports that go against :data:`ALLOWED`, as ``importer -> imported``."""
    return sorted(
        f"{name} -> {dep}"
        for name, deps in depends.items()
        for dep in deps
        if _layer(dep) != _layer(name) and _layer(dep) not in ALLOWED[_layer(name)]
    )


def _cycle() -> list[str] | None:
    """One import cycle among the package's modules, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for name in sorted(GRAPH):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_no_import_cycles() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_the_walk_sees_real_edges() -> None:
    """Guards the test above against a walker that finds nothing."""
    assert "asr_serve.config" in GRAPH["asr_serve.engines.base"]
    assert "asr_serve.serving.pipeline" in GRAPH["asr_serve.deployments.ingress"]
    assert "asr_serve.deployments.serve_metrics" in GRAPH["asr_serve.deployments.asr"]  # a method
    assert "asr_serve.serving.pipeline" in DEPENDS["asr_serve.serving.in_place"]  # type-only
    assert "asr_serve.serving.pipeline" not in GRAPH["asr_serve.serving.in_place"]


def test_every_module_is_in_a_layer() -> None:
    assert {_layer(name) for name in MODULES} == set(ALLOWED)


def test_dependencies_run_one_way() -> None:
    """deployments -> api -> serving / live -> engines / audio -> config / errors."""
    assert back_edges(DEPENDS) == []


def test_a_back_edge_is_caught() -> None:
    """Guards the test above: an upward import, or one to a neighbour, is reported."""
    depends = {
        "asr_serve.serving.pipeline": {"asr_serve.api.upload", "asr_serve.engines.base"},
        "asr_serve.live.sessions": {"asr_serve.serving.requests"},
        "asr_serve.engines.base": {"asr_serve.config"},
    }
    assert back_edges(depends) == [
        "asr_serve.live.sessions -> asr_serve.serving.requests",
        "asr_serve.serving.pipeline -> asr_serve.api.upload",
    ]


def test_config_is_the_leaf() -> None:
    assert GRAPH["asr_serve.config"] == set()
    assert GRAPH["asr_serve.errors"] == set()
    assert GRAPH["asr_serve.timing"] == set()


def test_an_engine_does_not_import_the_http_side() -> None:
    """An ASR replica reads its config and runs its engine; Redis and Starlette are the
    ingress's business."""
    code = (
        "import sys, asr_serve.engines.whisper, asr_serve.engines.funasr; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'redis', 'starlette'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_package_imports_nothing_of_the_repository_around_it() -> None:
    """``devtools``, ``tests`` and ``benchmarks`` are not in the wheel."""
    outside = {"devtools", "tests", "benchmarks", "cluster"}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not {n.split(".")[0] for n in names} & outside, path


def test_the_wheel_ships_the_package_and_its_page_only(tmp_path: Path) -> None:
    """Built as a user would get it (offline, from what setuptools reads), the wheel holds
    every module of ``asr_serve`` and the page, and nothing else."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(PACKAGE, source / "asr_serve", ignore=shutil.ignore_patterns("__pycache__"))
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "--quiet"]
    dist = tmp_path / "dist"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", *offline, "--wheel-dir", str(dist)]
    subprocess.run([*pip_wheel, str(source)], check=True, timeout=300)
    (wheel,) = dist.glob("asr_serve-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        files = {n for n in archive.namelist() if ".dist-info/" not in n}
    expected = {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*.py")}
    assert files == expected | {"asr_serve/web/index.html"}
