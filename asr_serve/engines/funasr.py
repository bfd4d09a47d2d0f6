"""The FunASR engine: any model ``funasr.AutoModel`` loads, Fun-ASR-Nano first.

Fun-ASR-Nano (``FunASRNano``: SenseVoice encoder, adaptor, Qwen3 decoder) is what this
service is built for; SenseVoice and Paraformer go through the same code path on a
best-effort basis. Decoding is greedy, so ``temperature`` is not used.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from asr_serve.config import SAMPLE_RATE, ModelConfig
from asr_serve.engines.base import (
    Engine,
    EngineCapabilities,
    EngineResult,
    Segment,
    TranscribeOptions,
    Word,
)
from asr_serve.engines.funasr_loading import auto_model
from asr_serve.engines.languages import FUN_ASR_NANO_LANGUAGES
from asr_serve.errors import ModelLoadError, ModelNotReadyError

#: SenseVoiceSmall takes the code itself (its ``lid_dict``).
SENSE_VOICE_LANGUAGES: Mapping[str, str] = {c: c for c in ("zh", "en", "yue", "ja", "ko")}
#: Model class -> code -> value of funasr's ``language`` kwarg. Models not listed choose no
#: language; they get ``languages = None`` and never see the option.
_LANGUAGE_VALUES: Mapping[str, Mapping[str, str]] = {
    "FunASRNano": FUN_ASR_NANO_LANGUAGES,
    "SenseVoiceSmall": SENSE_VOICE_LANGUAGES,
}
_HUBS = {"modelscope": "ms", "huggingface": "hf"}
#: funasr's names; it applies them to the LLM only (``llm_dtype``), the encoder stays fp32.
_LLM_DTYPES = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
#: Rich tags such as SenseVoice's ``<|en|><|NEUTRAL|><|Speech|>``.
_TAG = re.compile(r"<\|([^|]*)\|>")
#: Offered in download hints when the configured directory name is no Fun-ASR repo name.
_EXAMPLE_REPO = "FunAudioLLM/Fun-ASR-MLT-Nano-2512"

#: Items decode together only if they map to the same ``generate`` kwargs (hashable form).
_GroupKey = tuple[tuple[str, Any], ...]


class FunASREngine(Engine):
    """Transcribes a batch with one ``AutoModel.generate`` call per set of equal options.

    ``keywords`` join the prompt's hotwords. No translation, and no log-probabilities:
    funasr 1.4.16's ``FunASRNano.inference`` returns text (and CTC token times), its
    ``llm.generate`` is asked for no scores.
    """

    capabilities = EngineCapabilities(keywords=True)

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._model: Any = None
        self._language_values: Mapping[str, str] = {}
        # AutoModel.generate rewrites the AutoModel's kwargs on every call; serialise calls.
        self._lock = threading.Lock()

    def load(self) -> None:
        kwargs = self._load_kwargs()  # before importing funasr: a missing model fails at once
        if self.config.cpu_threads:
            torch.set_num_threads(self.config.cpu_threads)
        try:
            model = auto_model(**kwargs)
        except Exception as exc:
            where = (
                self.config.model
                if self.config.source == "local"
                else f"{self.config.model} from {self.config.source}"
            )
            raise ModelLoadError(
                f"model {self.config.name!r}: funasr could not load {where}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        self._model = model
        values = _LANGUAGE_VALUES.get(type(model.model).__name__)
        self._language_values = values or {}
        self.languages = frozenset(values) if values else None

    def _load_kwargs(self) -> dict[str, Any]:
        config = self.config
        device = _resolve_device(config.device)
        kwargs: dict[str, Any] = {
            "model": config.model,
            "device": device,
            "llm_dtype": _resolve_llm_dtype(config.dtype, device),
            "disable_update": True,
            "disable_pbar": True,
        }
        if config.source == "local":
            kwargs["model"] = str(self._check_local_dir())
        else:
            kwargs["hub"] = _HUBS[config.source]
            if config.revision:
                kwargs["model_revision"] = config.revision
        if config.cpu_threads:
            # funasr resets torch's thread count to ``ncpu`` (default 4) on every generate.
            kwargs["ncpu"] = config.cpu_threads
        # Only what differs from funasr's defaults, so a default config decodes with exactly
        # the generate kwargs funasr's own server uses.
        if config.max_new_tokens is not None:
            kwargs["max_length"] = config.max_new_tokens  # FunASRNano's max_new_tokens
        if config.repetition_penalty != 1.0:
            kwargs["llm_kwargs"] = {"repetition_penalty": config.repetition_penalty}
        if not config.itn:
            kwargs["itn"] = False
        kwargs.update(config.engine_options)
        return kwargs

    def _check_local_dir(self) -> Path:
        """Fail with a download command rather than funasr's hub fallback or random weights.

        funasr silently skips ``file_path_metas`` entries that do not exist: a missing
        ``model.pt`` leaves random weights, a missing LLM directory is looked up on the hub.
        """
        path = Path(self.config.model).expanduser().resolve()
        if not path.is_dir():
            problem = "does not exist"
        else:
            absent = [f for f in _required_files(path) if not (path / f).exists()]
            problem = f"lacks {', '.join(absent)}" if absent else None
        if problem is None:
            return path
        repo = f"FunAudioLLM/{path.name}" if path.name.startswith("Fun-ASR") else _EXAMPLE_REPO
        raise ModelLoadError(
            f"model {self.config.name!r}: local model directory {path} {problem}. "
            f"Download the model into it:\n"
            f"    modelscope download --model {repo} --local_dir {path}\n"
            f"or: hf download {repo} --local-dir {path}\n"
            f"and set `model: {path}` in this model's config, or set `source: modelscope` "
            f"(or `huggingface`) with `model: {repo}` to download it on start."
        )

    def transcribe(
        self, audios: Sequence[np.ndarray], options: Sequence[TranscribeOptions]
    ) -> list[EngineResult]:
        if len(audios) != len(options):
            raise ValueError(f"{len(audios)} audios but {len(options)} options")
        if self._model is None:
            raise ModelNotReadyError(f"model {self.config.name!r} is not loaded yet")
        # generate's kwargs apply to the whole call: one call per group of equal options.
        groups: dict[tuple[_GroupKey, bool], list[int]] = {}
        for i, opts in enumerate(options):
            groups.setdefault((self._generate_kwargs(opts), opts.word_timestamps), []).append(i)
        results: dict[int, EngineResult] = {}
        with self._lock:
            for (key, want_words), indices in groups.items():
                raws = self._generate([audios[i] for i in indices], dict(key), want_words)
                for i, raw in zip(indices, raws, strict=True):
                    results[i] = self._to_result(raw, audios[i], options[i])
        return [results[i] for i in range(len(audios))]

    def _generate_kwargs(self, options: TranscribeOptions) -> _GroupKey:
        kwargs: list[tuple[str, Any]] = []
        if options.language:
            value = self._language_values.get(options.language.lower())
            if value is not None:
                kwargs.append(("language", value))
        keywords = tuple(k.strip() for k in options.keywords if k.strip())
        hotwords = hotword_list(options.prompt) + keywords
        if hotwords:
            # FunASRNano reads ``hotwords`` (a list, put into its prompt); the contextual
            # Paraformers read ``hotword`` (a string). Each model ignores the other.
            hotword = ",".join(hotwords) if keywords else options.prompt
            kwargs += [("hotwords", hotwords), ("hotword", hotword)]
        if options.itn is not None and options.itn != self.config.itn:
            # Only a change: the model's own setting is already in AutoModel's kwargs.
            kwargs.append(("itn", options.itn))
        if options.word_timestamps:
            kwargs.append(("output_timestamp", True))  # SenseVoice; others ignore it
        return tuple(kwargs)

    def _generate(
        self, audios: Sequence[np.ndarray], kwargs: dict[str, Any], want_words: bool
    ) -> list[dict[str, Any]]:
        """Run one ``generate`` over the whole list and return one result dict per item.

        Results are matched by position: every item of a list input gets the same key.
        """
        if "hotwords" in kwargs:
            kwargs["hotwords"] = list(kwargs["hotwords"])
        # FunASRNano.generate_chatml handles str and torch.Tensor only (an ndarray crashes).
        # A copy: the decoder may hand over read-only arrays, which torch warns about sharing.
        inputs = [torch.tensor(np.asarray(a, dtype=np.float32)) for a in audios]
        with self._llm_batching(want_words):
            raws = self._model.generate(input=inputs, batch_size=len(inputs), **kwargs)
        if len(raws) == len(inputs):
            return raws
        # Paraformer returns a single empty result for a batch in which it finds no token.
        return [
            (self._model.generate(input=[x], batch_size=1, **kwargs) or [{}])[0] for x in inputs
        ]

    @contextlib.contextmanager
    def _llm_batching(self, want_words: bool) -> Iterator[None]:
        """Make FunASRNano decode a list as one batch unless word timestamps are wanted.

        With ``batch_size=N`` a list reaches ``FunASRNano.inference_llm``, which decodes it
        in ``_inference_llm_batch`` (each item encoded alone, then ONE left-padded
        ``llm.generate``), but only when no CTC decoder is loaded: with one (the released
        configs declare one) it falls back to ``_inference_llm_ctc_sequential``, one
        ``generate`` per item, because only that path aligns CTC timestamps. So the CTC
        decoder is hidden for the call; a group asking for word timestamps keeps it and is
        decoded one item at a time, the one case that cannot batch.

        The batch's LLM call also derives position ids from the attention mask (see
        :func:`_positions_from_mask`), so a batched item decodes exactly as it does alone.
        """
        model = self._model.model
        if want_words or not hasattr(model, "_inference_llm_batch"):
            yield
            return
        ctc_decoder = getattr(model, "ctc_decoder", None)
        generate = model.llm.generate
        model.ctc_decoder = None
        model.llm.generate = _positions_from_mask(generate)
        try:
            yield
        finally:
            model.llm.generate = generate
            model.ctc_decoder = ctc_decoder

    def _to_result(
        self, raw: Mapping[str, Any], audio: np.ndarray, options: TranscribeOptions
    ) -> EngineResult:
        duration = len(audio) / SAMPLE_RATE
        tagged = str(raw.get("text", ""))
        text = _TAG.sub("", tagged).strip()
        detected = next((t for t in _TAG.findall(tagged) if t in self._language_values), None)
        language = options.language.lower() if options.language else detected
        if not text:
            return EngineResult(text="", language=language, duration=duration)
        words = _words(raw, text)
        start, end = (words[0].start, words[-1].end) if words else (0.0, duration)
        segment = Segment(
            id=0,
            start=start,
            end=end,
            text=text,
            words=words if options.word_timestamps else None,
        )
        return EngineResult(text=text, language=language, duration=duration, segments=[segment])


def hotword_list(prompt: str | None) -> tuple[str, ...]:
    """The request's ``prompt`` as Fun-ASR-Nano hotwords, split as ``funasr.bin.server`` splits
    its ``hotwords`` field: at commas, each stripped, empty ones dropped."""
    return tuple(w.strip() for w in (prompt or "").split(",") if w.strip())


def _positions_from_mask(generate: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``llm.generate`` to drop the ``position_ids`` funasr passes for a left-padded batch.

    ``FunASRNano._inference_llm_batch`` hands ``generate`` the prompt's position ids. Many
    transformers releases our pin allows never advance position ids a caller passed (4.51.3,
    4.55.4, 4.57.6 and 5.0.0 checked; 5.24 does): every generated token after the first is
    then placed at the prompt's last position, and batched items decode differently from the
    same items alone (5 of 16 clips equal on the tiny checkpoint with 4.51.3, 16 of 16 with this
    wrapper). Without them, every version derives positions from the attention mask, which it
    extends per token: 0, 1, 2 ... over each item's real tokens, as for an item alone.
    """

    def call(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("position_ids", None)
        return generate(*args, **kwargs)

    return call


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        # funasr would quietly fall back to the CPU; a GPU replica on CPU is a config error.
        raise ModelLoadError("device 'cuda' is configured but torch sees no CUDA device")
    return device


def _resolve_llm_dtype(dtype: str, device: str) -> str:
    """The LLM decoder's dtype in funasr's terms; ``auto``: fp32 on CPU, half on GPU.

    On GPU ``auto`` prefers bf16: funasr warns that Qwen3 is numerically unstable in fp16
    (degraded, repetitive transcripts). fp16 remains for GPUs without bf16. Models without
    an LLM ignore ``llm_dtype`` and run in fp32 (``engine_options: {fp16: true}`` casts a
    Paraformer).
    """
    if dtype == "int8":
        raise ModelLoadError(
            "dtype 'int8' is not supported by the funasr engine; "
            "use auto, float32, float16 or bfloat16"
        )
    if dtype != "auto":
        return _LLM_DTYPES[dtype]
    if device == "cpu":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def _required_files(model_dir: Path) -> list[str]:
    """config.yaml, the weights and, where ``configuration.json`` names them, the LLM dirs."""
    required = ["config.yaml", "model.pt"]
    meta_file = model_dir / "configuration.json"
    if not meta_file.is_file():
        return required
    try:
        metas = json.loads(meta_file.read_text(encoding="utf-8")).get("file_path_metas", {})
    except (OSError, ValueError, AttributeError):
        return required
    if not isinstance(metas, dict):
        return required
    required = [metas.get("config", "config.yaml"), metas.get("init_param", "model.pt")]
    for conf in metas.values():
        if isinstance(conf, dict) and isinstance(conf.get("init_param_path"), str):
            required.append(conf["init_param_path"])
    return list(dict.fromkeys(required))


def _words(raw: Mapping[str, Any], text: str) -> list[Word] | None:
    """Token timings when funasr gives them: FunASRNano in seconds, others in milliseconds."""
    stamps = raw.get("timestamps")
    if stamps:  # FunASRNano with CTC: [{"token", "start_time", "end_time"}]
        return [Word(start=s["start_time"], end=s["end_time"], word=s["token"]) for s in stamps]
    stamps = raw.get("timestamp")  # Paraformer / SenseVoice: [[start_ms, end_ms], ...]
    tokens = raw.get("words") or text.split()
    if not stamps or len(tokens) != len(stamps):
        return None
    return [
        Word(start=s / 1000, end=e / 1000, word=str(t))
        for t, (s, e) in zip(tokens, stamps, strict=True)
    ]
