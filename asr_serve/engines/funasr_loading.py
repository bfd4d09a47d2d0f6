"""``funasr.AutoModel`` with only the funasr modules the model is built from imported.

funasr finds a model's parts (model, encoder, adaptor, frontend, tokenizer) by the names its
``config.yaml`` gives them, in a registry its modules fill as they are imported; so
``import funasr`` imports every module funasr ships, hundreds of models' worth, before it
can build one (seconds of CPU, paid by every replica that starts). Here funasr is imported
without that walk, and a local checkpoint's parts are registered by importing only the
modules that register the names its ``config.yaml`` uses, found by reading funasr's sources
for ``tables.register(...)``. A hub model (no config until funasr downloads it), a name no
module registers, or a model that fails to build that way gets the whole registry, as
``import funasr`` would have made it. (What it saves: benchmarks/README.md, "Figures behind
the code".)
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import logging
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

logger = logging.getLogger(__name__)

#: ``@tables.register("model_classes", "FunASRNano")``: every registration in funasr 1.4
#: names its table and key as string literals.
_REGISTRATION = re.compile(r"""tables\.register\(\s*["'](\w+)["']\s*,\s*["']([^"']+)["']""")


def auto_model(**kwargs: Any) -> Any:
    """``funasr.AutoModel(**kwargs)``, registering what ``kwargs["model"]`` needs first."""
    funasr = _import_without_walk()
    config = Path(str(kwargs["model"])) / "config.yaml"
    partial = config.is_file() and _register_named(config)
    if not partial:
        _register_everything(funasr)
    try:
        return funasr.AutoModel(**kwargs)
    except Exception:
        if not partial:
            raise
        logger.info(
            "funasr could not build %s from its named parts alone; retrying with every "
            "funasr module imported",
            kwargs["model"],
            exc_info=True,
        )
        _register_everything(funasr)
        return funasr.AutoModel(**kwargs)


@contextlib.contextmanager
def _no_package_walk() -> Iterator[None]:
    """funasr's ``__init__`` walks its package with ``pkgutil.walk_packages``: walk nothing."""
    walk = pkgutil.walk_packages
    pkgutil.walk_packages = lambda *args, **kwargs: iter(())  # type: ignore[assignment]
    try:
        yield
    finally:
        pkgutil.walk_packages = walk


def _import_without_walk() -> ModuleType:
    with _no_package_walk():
        import funasr
    return funasr


def _register_everything(funasr: ModuleType) -> None:
    """What ``import funasr`` does on its own: import every module (once; cached after)."""
    funasr.import_submodules(funasr.__name__)


def _register_named(config: Path) -> bool:
    """Import the modules registering any name ``config`` uses; ``False`` if its ``model`` is
    registered by none (then nothing is imported), or one of them fails to import."""
    raw = yaml.safe_load(config.read_text())
    if not isinstance(raw, dict):
        return False
    index = _registrations()
    if str(raw.get("model")) not in index:
        return False
    modules = {m for name in _strings(raw) for m in index.get(name, ())}
    try:
        # In the package walk's order, so a name two modules register resolves as it would.
        for module in sorted(modules, key=lambda m: m.split(".")):
            importlib.import_module(module)
    except Exception:
        logger.info("importing funasr's %s failed", module, exc_info=True)
        return False
    return True


@functools.cache
def _registrations() -> dict[str, tuple[str, ...]]:
    """Registered name -> the funasr modules registering it (any table)."""
    spec = importlib.util.find_spec("funasr")
    assert spec is not None and spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    found: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8", errors="replace")
        if "tables.register" not in text:
            continue
        parts = path.relative_to(root.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for _table, name in _REGISTRATION.findall(text):
            found.setdefault(name, set()).add(module)
    return {name: tuple(sorted(modules)) for name, modules in found.items()}


def _strings(node: Any) -> Iterator[str]:
    """Every string value in a parsed YAML document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
