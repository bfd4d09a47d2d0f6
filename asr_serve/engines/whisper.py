"""The faster-whisper engine: Whisper as CTranslate2 weights, batched where batching pays.

Whisper reads 30 s windows. A clip of at most one window whose request wants no word times
or log-probabilities (the common case) goes through one batched ``encode`` + ``generate``:
with the no-timestamps prompt, or, when segment timestamps are asked for, with timestamp
tokens that the segments are read from. Anything else (word times and log-probabilities need
faster-whisper's alignment; longer audio must be windowed) goes through faster-whisper's own
``transcribe``, one item at a time. Both paths decode with the
same settings (beam 5, or best of 5 samples when ``temperature`` > 0; the same no-speech
gate), so which other requests share a clip's batch changes its text only through the
numerics of batched int8 kernels: rarely, and on words the model was unsure of.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import Segment as FWSegment
from faster_whisper.transcribe import get_suppressed_tokens
from threadpoolctl import threadpool_limits

from asr_serve.config import SAMPLE_RATE, ModelConfig
from asr_serve.engines.base import (
    Engine,
    EngineCapabilities,
    EngineResult,
    Segment,
    TranscribeOptions,
    Word,
)
from asr_serve.engines.embedded import EMBEDDED, EMBEDDED_MULTILINGUAL, embedded_path
from asr_serve.errors import ModelLoadError, ModelNotReadyError

#: faster-whisper's own defaults for ``transcribe``; the batched path uses the same.
_BEAM_SIZE = 5
_BEST_OF = 5
_NO_SPEECH_THRESHOLD = 0.6
_LOG_PROB_THRESHOLD = -1.0
#: Whisper's decoder context; a prompt plus new tokens must fit in it.
_MAX_LENGTH = 448
#: Previous-text tokens faster-whisper keeps in a prompt (Whisper's own limit).
_MAX_PROMPT_TOKENS = _MAX_LENGTH // 2 - 1
#: A prompt is at most sot_prev + 223 context tokens + 4 sequence tokens, and faster-whisper
#: rejects prompt + ``max_new_tokens`` > 448: capping here keeps every request legal.
_MAX_NEW_TOKENS_CAP = _MAX_LENGTH - (1 + _MAX_PROMPT_TOKENS + 4)
#: Items per encode + generate call on CPU. Encoding pads every clip to a 30 s window and
#: costs the same per window at any batch size; beam-search decoding gains from batching up
#: to about four items and nothing past them (benchmarks/README.md, "Figures behind the
#: code"). On GPU the whole list goes in one call.
_CPU_BATCH = 4
#: A word probability of 0 has no log; floor it (log is about -27.6).
_MIN_PROBABILITY = 1e-12


class WhisperEngine(Engine):
    """Whisper through faster-whisper; ``embedded`` is tiny.en, ``embedded-multilingual``
    Whisper base (:mod:`asr_serve.engines.embedded`)."""

    #: Every clip is encoded as a whole 30 s window: a 0.1 s item costs what a 28 s one does.
    min_item_s = 30.0

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        #: ``auto`` means CUDA when CTranslate2 can see a GPU.
        self.device = config.device
        if self.device == "auto":
            self.device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        #: CTranslate2 compute type; ``auto`` is int8 on CPU (fast, tiny loss), fp16 on GPU.
        self.compute_type = config.dtype
        if self.compute_type == "auto":
            self.compute_type = "float16" if self.device == "cuda" else "int8"
        self._model: WhisperModel | None = None
        self._suppress_tokens: list[int] = []
        self._max_new_tokens = (
            None
            if config.max_new_tokens is None
            else min(config.max_new_tokens, _MAX_NEW_TOKENS_CAP)
        )

    def load(self) -> None:
        model_path, local_only = self._locate()
        # faster-whisper's log-mel features are numpy matrix products. Their BLAS would
        # follow the process's OMP_NUM_THREADS (Ray sets it to a replica's ``num_cpus``), and
        # other thread counts round the features, and so a borderline word, differently on
        # some CPUs (AMD EPYC's OpenBLAS kernels): one thread gives a clip the same text in
        # every process, and on this small product is no slower than two (benchmarks/README.md,
        # "Figures behind the code").
        threadpool_limits(1, user_api="blas")
        try:
            model = WhisperModel(
                model_path,
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.config.cpu_threads,
                local_files_only=local_only,
                revision=self.config.revision,
                **self.config.engine_options,
            )
        except Exception as exc:
            hint = ""
            if local_only and not Path(model_path).is_dir():
                hint = (
                    " (neither a directory nor in the Hugging Face cache; set"
                    " `source: huggingface` to download it)"
                )
            raise ModelLoadError(
                f"model {self.config.name!r}: faster-whisper could not load {model_path!r}"
                f" on {self.device}/{self.compute_type}{hint}: {type(exc).__name__}: {exc}"
            ) from exc
        self._model = model
        self.languages = frozenset(model.supported_languages)
        # Word probabilities come with word timestamps; only multilingual weights translate.
        self.capabilities = EngineCapabilities(translate=model.model.is_multilingual, logprobs=True)
        # The non-speech symbols faster-whisper suppresses by default (``suppress_tokens=[-1]``).
        self._suppress_tokens = get_suppressed_tokens(self._tokenizer(None), [-1])

    def _locate(self) -> tuple[str, bool]:
        """What to hand ``WhisperModel``, and whether it must not download."""
        if self.config.model in (EMBEDDED, EMBEDDED_MULTILINGUAL):
            return str(embedded_path(self.config.model, self.config.name)), True
        if self.config.source not in ("local", "huggingface"):
            raise ModelLoadError(
                f"model {self.config.name!r}: faster-whisper loads a local directory or a "
                f"Hugging Face id, not source {self.config.source!r}"
            )
        path = Path(self.config.model).expanduser()
        if path.is_dir():
            return str(path), True
        local_only = self.config.source == "local"
        if local_only and (path.is_absolute() or self.config.model.startswith((".", "~"))):
            raise ModelLoadError(
                f"model {self.config.name!r}: {str(path)!r} is not a directory; point `model` "
                "at a CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json)"
            )
        # A size ("tiny.en") or hub id: the cache only, unless downloads are allowed.
        return self.config.model, local_only

    @property
    def model(self) -> WhisperModel:
        """The loaded faster-whisper model; a replica asked too early answers 503."""
        if self._model is None:
            raise ModelNotReadyError(f"model {self.config.name!r} is not loaded yet")
        return self._model

    def transcribe(
        self, audios: Sequence[np.ndarray], options: Sequence[TranscribeOptions]
    ) -> list[EngineResult]:
        results: list[EngineResult | None] = [None] * len(audios)
        window = self.model.feature_extractor.n_samples
        contexts: dict[int, list[int]] = {}
        # Items share a ``generate`` call only with the same temperature, prompt length, task
        # and timestamp mode: CTranslate2 needs <|startoftranscript|> at one position across
        # a batch, and the prompt says whether timestamps are wanted.
        groups: dict[tuple[float, int, str, bool], list[int]] = {}
        for i, (audio, opts) in enumerate(zip(audios, options, strict=True)):
            if opts.word_timestamps or opts.logprobs or len(audio) > window:
                results[i] = self._transcribe_windowed(audio, opts)
            else:
                contexts[i] = self._prompt_tokens(opts.prompt)
                key = (opts.temperature, len(contexts[i]), opts.task, opts.segment_timestamps)
                groups.setdefault(key, []).append(i)
        step = len(audios) if self.device == "cuda" else _CPU_BATCH
        for (temperature, _, task, timestamps), indices in groups.items():
            for start in range(0, len(indices), step):
                chunk = indices[start : start + step]
                decoded = self._decode_window_batch(
                    [audios[i] for i in chunk],
                    [options[i].language for i in chunk],
                    [contexts[i] for i in chunk],
                    temperature,
                    task,
                    timestamps,
                )
                for i, result in zip(chunk, decoded, strict=True):
                    results[i] = result
        return [r for r in results if r is not None]

    def _decode_window_batch(
        self,
        audios: Sequence[np.ndarray],
        languages: Sequence[str | None],
        contexts: Sequence[list[int]],
        temperature: float,
        task: str,
        timestamps: bool = False,
    ) -> list[EngineResult]:
        """At most 30 s each, equal prompt lengths: one encode, one generate. With
        ``timestamps`` the prompt asks for timestamp tokens (CTranslate2 applies Whisper's
        timestamp rules) and each result has its segments."""
        model = self.model
        features = np.stack([pad_or_trim(model.feature_extractor(a)) for a in audios])
        encoded = model.encode(features)
        resolved = self._resolve_languages(encoded, languages)
        tokenizers = [self._tokenizer(lang, task) for lang in resolved]
        prompts = [
            model.get_prompt(tok, context, without_timestamps=not timestamps)
            for tok, context in zip(tokenizers, contexts, strict=True)
        ]
        max_length = _MAX_LENGTH
        if self._max_new_tokens is not None:
            max_length = len(prompts[0]) + self._max_new_tokens
        outputs = model.model.generate(
            encoded,
            prompts,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress_tokens,
            **_sampling_kwargs(temperature),
        )
        results = []
        for audio, tok, lang, out in zip(audios, tokenizers, resolved, outputs, strict=True):
            tokens = out.sequences_ids[0]
            # faster-whisper's gate: likely silence and a weak transcript -> no text.
            avg_logprob = out.scores[0] * len(tokens) / (len(tokens) + 1)
            silent = (
                out.no_speech_prob > _NO_SPEECH_THRESHOLD and avg_logprob <= _LOG_PROB_THRESHOLD
            )
            duration = len(audio) / SAMPLE_RATE
            if not timestamps:
                text = "" if silent else tok.decode(tokens).strip()
                results.append(EngineResult(text=text, language=lang, duration=duration))
                continue
            segments = [] if silent else self._timed_segments(tokens, tok, duration, avg_logprob)
            results.append(
                EngineResult(
                    text=" ".join(s.text for s in segments),
                    language=lang,
                    duration=duration,
                    segments=segments,
                )
            )
        return results

    def _timed_segments(
        self, tokens: Sequence[int], tok: Tokenizer, duration: float, avg_logprob: float
    ) -> list[Segment]:
        """Segments from one window's tokens: text between a timestamp and the next, as
        ``<|0.00|> text <|5.00|><|5.00|> text <|9.40|>``. Text left open at the end (the
        tokens ran out) ends with the audio; times are clamped to it."""
        precision = self.model.time_precision
        spans: list[tuple[float, float, list[int]]] = []
        start, last_end = None, 0.0
        text: list[int] = []
        for token in tokens:
            if token < tok.timestamp_begin:
                text.append(token)
                continue
            at = (token - tok.timestamp_begin) * precision
            if text:
                spans.append((last_end if start is None else start, at, text))
                text, start, last_end = [], None, at
            else:
                start = at
        if text:
            spans.append((last_end if start is None else start, duration, text))
        segments = []
        for begin, end, ids in spans:
            words = tok.decode(ids).strip()
            if words:
                segments.append(
                    Segment(
                        id=len(segments),
                        start=min(begin, duration),
                        end=min(max(end, begin), duration),
                        text=words,
                        avg_logprob=avg_logprob,
                    )
                )
        return segments

    def _resolve_languages(
        self, encoded: ctranslate2.StorageView, requested: Sequence[str | None]
    ) -> list[str]:
        """The requested language, else ``en`` (English-only) or the detected one."""
        if not self.model.model.is_multilingual:
            return ["en"] * len(requested)
        wanted = [lang.lower() if lang else "" for lang in requested]
        if all(wanted):
            return wanted
        detected = self.model.model.detect_language(encoded)
        return [
            lang or best[0][0][2:-2]  # "<|de|>" -> "de"
            for lang, best in zip(wanted, detected, strict=True)
        ]

    def _tokenizer(self, language: str | None, task: str = "transcribe") -> Tokenizer:
        model = self.model
        return Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task=task,
            language=language or "en",
        )

    def _prompt_tokens(self, prompt: str | None) -> list[int]:
        """As faster-whisper encodes ``initial_prompt`` (leading space), trimmed as it trims."""
        if not prompt:
            return []
        # Text tokens are the same for every language; only special tokens differ.
        return self._tokenizer(None).encode(" " + prompt.strip())[-_MAX_PROMPT_TOKENS:]

    def _transcribe_windowed(self, audio: np.ndarray, options: TranscribeOptions) -> EngineResult:
        """faster-whisper's sequential transcribe: timestamps, log-probabilities (its word
        probabilities come with word timestamps), and windows past 30 s."""
        duration = len(audio) / SAMPLE_RATE
        words = options.word_timestamps or options.logprobs
        segments, info = self.model.transcribe(
            audio,
            language=options.language.lower() if options.language else None,
            task=options.task,
            initial_prompt=options.prompt or None,
            temperature=options.temperature,
            beam_size=_BEAM_SIZE,
            best_of=_BEST_OF,
            word_timestamps=words,
            max_new_tokens=self._max_new_tokens,
        )
        fw_segments = list(segments)
        wanted = options.segment_timestamps or words
        return EngineResult(
            text="".join(s.text for s in fw_segments).strip(),
            language=info.language,
            duration=duration,
            segments=(
                _segments(fw_segments, duration, words=words, logprobs=options.logprobs)
                if wanted
                else []
            ),
        )


def _sampling_kwargs(temperature: float) -> dict[str, Any]:
    """``generate`` settings faster-whisper uses for one temperature (no fallback ladder)."""
    if temperature > 0:
        return {
            "beam_size": 1,
            "num_hypotheses": _BEST_OF,
            "sampling_topk": 0,
            "sampling_temperature": temperature,
        }
    return {"beam_size": _BEAM_SIZE, "patience": 1.0}


def _segments(
    segments: Iterable[FWSegment], duration: float, *, words: bool, logprobs: bool
) -> list[Segment]:
    """Ours, clamped to the audio: the last timestamp token can overshoot the clip's end."""

    def clamp(t: float) -> float:
        return min(max(t, 0.0), duration)

    return [
        Segment(
            id=i,
            start=clamp(s.start),
            end=clamp(s.end),
            text=s.text.strip(),
            avg_logprob=s.avg_logprob,
            words=(
                [
                    Word(
                        start=clamp(w.start),
                        end=clamp(w.end),
                        word=w.word.strip(),
                        logprob=math.log(max(w.probability, _MIN_PROBABILITY))
                        if logprobs
                        else None,
                    )
                    for w in s.words or []
                ]
                if words
                else None
            ),
        )
        for i, s in enumerate(segments)
    ]
