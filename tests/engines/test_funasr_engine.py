"""FunASREngine on the tiny Fun-ASR-Nano checkpoint, through the real funasr code path."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from asr_serve.config import ModelConfig
from asr_serve.engines import create_engine
from asr_serve.engines.base import TranscribeOptions
from asr_serve.engines.funasr import FUN_ASR_NANO_LANGUAGES, FunASREngine
from asr_serve.errors import InvalidRequestError, ModelLoadError, ModelNotReadyError

PLAIN = TranscribeOptions()


def _texts(engine: FunASREngine, clips: list[np.ndarray], options=None) -> list[str]:
    options = options or [PLAIN] * len(clips)
    return [r.text for r in engine.transcribe(clips, options)]


def _spy(monkeypatch, obj: object, name: str) -> list[tuple[tuple, dict[str, Any]]]:
    """Record each call of ``obj.name`` as ``(args, kwargs)``, then call through."""
    calls: list[tuple[tuple, dict[str, Any]]] = []
    real = getattr(obj, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, spy)
    return calls


def test_created_by_name_and_loaded(tiny_engine: FunASREngine, tiny_config) -> None:
    assert isinstance(create_engine(tiny_config()), FunASREngine)
    assert tiny_engine.languages == frozenset(FUN_ASR_NANO_LANGUAGES)
    assert len(tiny_engine.languages) == 31


def test_results_describe_each_input(tiny_engine: FunASREngine, clips) -> None:
    results = tiny_engine.transcribe(clips, [PLAIN] * len(clips))
    assert len(results) == len(clips)
    for result, clip in zip(results, clips, strict=True):
        assert result.text
        assert result.duration == pytest.approx(len(clip) / 16000)
        [segment] = result.segments
        assert (segment.start, segment.end, segment.text) == (0.0, result.duration, result.text)
        assert segment.words is None


def test_different_inputs_give_different_text(tiny_engine: FunASREngine, clips) -> None:
    assert len(set(_texts(tiny_engine, clips))) == len(clips)


def test_same_input_same_text(tiny_engine: FunASREngine, clips) -> None:
    assert _texts(tiny_engine, clips) == _texts(tiny_engine, clips)


def test_batch_equals_one_by_one(tiny_engine: FunASREngine, clips) -> None:
    one_by_one = [_texts(tiny_engine, [clip])[0] for clip in clips]
    assert _texts(tiny_engine, clips) == one_by_one


def test_a_batch_is_one_batched_llm_call(tiny_engine: FunASREngine, clips, monkeypatch) -> None:
    model = tiny_engine._model.model
    batched = _spy(monkeypatch, model, "_inference_llm_batch")
    generates = _spy(monkeypatch, model.llm, "generate")
    tiny_engine.transcribe(clips, [PLAIN] * 4)
    assert [len(args[0]) for args, _ in batched] == [4]
    [(_, generate_kwargs)] = generates
    assert generate_kwargs["inputs_embeds"].shape[0] == 4


def test_mixed_options_split_into_groups_in_order(
    tiny_engine: FunASREngine, clips, monkeypatch
) -> None:
    english = TranscribeOptions(language="en")
    hinted = TranscribeOptions(prompt="Ray Serve")
    options = [english, PLAIN, english, hinted]
    expected = [_texts(tiny_engine, [c], [o])[0] for c, o in zip(clips, options, strict=True)]

    model = tiny_engine._model.model
    batched = _spy(monkeypatch, model, "_inference_llm_batch")
    prompts: list[tuple[list[str], str | None]] = []
    real_prompt = model.get_prompt

    def get_prompt(hotwords: list[str], language: str | None = None, itn: bool = True) -> str:
        prompts.append((list(hotwords), language))
        return real_prompt(hotwords, language, itn)

    monkeypatch.setattr(model, "get_prompt", get_prompt)
    assert _texts(tiny_engine, clips, options) == expected
    # The two English items decode together; the other two are alone.
    assert [(len(args[0]), kwargs["language"]) for args, kwargs in batched] == [(2, "英文")]
    assert prompts == [([], "英文"), ([], None), (["Ray Serve"], None)]


def test_options_reach_the_prompt_and_change_the_text(tiny_engine: FunASREngine, clips) -> None:
    plain = _texts(tiny_engine, clips[:1])
    assert _texts(tiny_engine, clips[:1], [TranscribeOptions(language="ja")]) != plain
    assert _texts(tiny_engine, clips[:1], [TranscribeOptions(prompt="Kubernetes")]) != plain


def test_itn_per_item_reaches_the_prompt_only_when_it_differs(
    tiny_engine: FunASREngine, clips, monkeypatch
) -> None:
    model = tiny_engine._model.model
    prompts: list[bool] = []
    real_prompt = model.get_prompt

    def get_prompt(hotwords: list[str], language: str | None = None, itn: bool = True) -> str:
        prompts.append(itn)
        return real_prompt(hotwords, language, itn)

    monkeypatch.setattr(model, "get_prompt", get_prompt)
    options = [TranscribeOptions(itn=False), TranscribeOptions(itn=True), PLAIN]
    _texts(tiny_engine, clips[:3], options)
    # itn=True is the model's setting: that item decodes in one batch with the plain one.
    assert sorted(prompts) == [False, True]
    assert tiny_engine._generate_kwargs(TranscribeOptions(itn=True)) == ()


def test_language_is_reported(tiny_engine: FunASREngine, clips) -> None:
    [with_code, without] = tiny_engine.transcribe(
        clips[:2], [TranscribeOptions(language="EN"), PLAIN]
    )
    assert (with_code.language, without.language) == ("en", None)


def test_unsupported_language_is_rejected(tiny_engine: FunASREngine) -> None:
    tiny_engine.check_options(TranscribeOptions(language="yue"))
    with pytest.raises(InvalidRequestError) as info:
        tiny_engine.check_options(TranscribeOptions(language="xx"))
    assert info.value.param == "language"


def test_keywords_join_the_hotwords_and_the_rest_is_refused(
    tiny_engine: FunASREngine, clips, monkeypatch
) -> None:
    """``keywords`` are Fun-ASR-Nano hotwords beside the prompt's; it gives no
    log-probabilities and does not translate, so those are refused naming their field."""
    model = tiny_engine._model.model
    prompts: list[list[str]] = []
    real_prompt = model.get_prompt

    def get_prompt(hotwords: list[str], language: str | None = None, itn: bool = True) -> str:
        prompts.append(list(hotwords))
        return real_prompt(hotwords, language, itn)

    monkeypatch.setattr(model, "get_prompt", get_prompt)
    with_keywords = TranscribeOptions(prompt="Ray Serve", keywords=("Kubernetes", " "))
    tiny_engine.check_options(with_keywords)
    _texts(tiny_engine, clips[:1], [with_keywords])
    assert prompts == [["Ray Serve", "Kubernetes"]]
    for options, param in (
        (TranscribeOptions(logprobs=True), "include"),
        (TranscribeOptions(task="translate"), "model"),
    ):
        with pytest.raises(InvalidRequestError) as info:
            tiny_engine.check_options(options)
        assert info.value.param == param


def test_max_new_tokens_bounds_the_output(
    tiny_config, tiny_engine: FunASREngine, clips, monkeypatch
) -> None:
    engine = FunASREngine(tiny_config(max_new_tokens=3))
    engine.load()
    llm = engine._model.model.llm
    real_generate = llm.generate
    seen: list[tuple[int, int]] = []

    def generate(**kwargs: Any) -> torch.Tensor:
        out = real_generate(**kwargs)
        seen.append((kwargs["max_new_tokens"], out.shape[-1]))
        return out

    monkeypatch.setattr(llm, "generate", generate)
    capped = _texts(engine, clips)
    [(max_new_tokens, generated)] = seen
    assert max_new_tokens == 3
    assert generated <= 3
    full = _texts(tiny_engine, clips)
    assert sum(map(len, capped)) < sum(map(len, full))


@pytest.fixture
def ctc_decoder(tiny_engine: FunASREngine) -> Iterator[torch.nn.Module]:
    """A stand-in for the released checkpoints' CTC decoder, which the tiny one lacks.

    Set by hand: pytest's monkeypatch undo deletes attributes an ``nn.Module`` keeps
    outside its ``__dict__``.
    """
    model = tiny_engine._model.model
    saved = model.ctc_decoder
    model.ctc_decoder = ctc = torch.nn.Identity()
    yield ctc
    model.ctc_decoder = saved


def test_a_ctc_decoder_is_hidden_so_the_batch_stays_batched(
    tiny_engine: FunASREngine, clips, ctc_decoder, monkeypatch
) -> None:
    model = tiny_engine._model.model
    seen: list[object] = []
    real_batch = model._inference_llm_batch

    def batch(*args: Any, **kwargs: Any) -> Any:
        seen.append(model.ctc_decoder)
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(model, "_inference_llm_batch", batch)
    tiny_engine.transcribe(clips, [PLAIN] * len(clips))
    assert seen == [None]
    assert model.ctc_decoder is ctc_decoder


def test_word_timestamps_take_the_ctc_path(
    tiny_engine: FunASREngine, clips, ctc_decoder, monkeypatch
) -> None:
    model = tiny_engine._model.model
    calls: list[int] = []

    def sequential(data_in, data_lengths, key, tokenizer, frontend, **kwargs):
        calls.append(len(data_in))
        stamps = [{"token": "hi", "start_time": 0.12, "end_time": 0.3}]
        return [{"key": k, "text": "hi", "timestamps": stamps} for k in key], {}

    monkeypatch.setattr(model, "_inference_llm_ctc_sequential", sequential)
    words = TranscribeOptions(word_timestamps=True)
    results = tiny_engine.transcribe(clips[:2], [words, words])
    assert calls == [2]
    [segment] = results[0].segments
    assert (segment.start, segment.end) == (0.12, 0.3)
    assert [(w.word, w.start, w.end) for w in segment.words] == [("hi", 0.12, 0.3)]


def test_missing_local_dir_says_what_to_download(tiny_config, tmp_path: Path) -> None:
    missing = tmp_path / "Fun-ASR-MLT-Nano-2512"
    with pytest.raises(ModelLoadError) as info:
        FunASREngine(tiny_config(model=str(missing))).load()
    message = str(info.value)
    assert "does not exist" in message
    assert (
        f"modelscope download --model FunAudioLLM/Fun-ASR-MLT-Nano-2512 --local_dir {missing}"
        in message
    )
    assert "hf download FunAudioLLM/Fun-ASR-MLT-Nano-2512" in message
    assert "`model:" in message and "source: modelscope" in message


def test_a_missing_model_fails_before_funasr_is_imported(
    tiny_config, tmp_path: Path, monkeypatch
) -> None:
    """Importing funasr takes seconds of CPU; each of Serve's start attempts of a replica
    with no model must fail without paying it."""
    monkeypatch.setitem(sys.modules, "funasr", None)  # importing it now raises ImportError
    with pytest.raises(ModelLoadError, match="does not exist"):
        FunASREngine(tiny_config(model=str(tmp_path / "absent"))).load()


def test_dir_without_weights_is_incomplete(tiny_config, tiny_model_dir: Path, tmp_path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.yaml", "configuration.json"):
        (partial / name).write_bytes((tiny_model_dir / name).read_bytes())
    with pytest.raises(ModelLoadError, match=r"lacks model\.pt, Qwen3-0\.6B"):
        FunASREngine(tiny_config(model=str(partial))).load()


def test_other_load_failures_are_wrapped(tiny_config, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.yaml").write_text("model: NoSuchModel\n")
    (broken / "model.pt").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"funasr could not load .*NoSuchModel"):
        FunASREngine(tiny_config(model=str(broken))).load()


class _FakeAutoModel:
    """Captures the kwargs ``load`` passes to ``funasr.AutoModel``."""

    calls: list[dict[str, Any]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        self.model = torch.nn.Identity()


@pytest.fixture
def fake_auto_model(monkeypatch) -> list[dict[str, Any]]:
    import funasr

    _FakeAutoModel.calls = []
    monkeypatch.setattr(funasr, "AutoModel", _FakeAutoModel)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    return _FakeAutoModel.calls


def test_load_kwargs_for_a_hub_model(fake_auto_model: list[dict[str, Any]]) -> None:
    config = ModelConfig(
        name="mlt",
        engine="funasr",
        model="FunAudioLLM/Fun-ASR-MLT-Nano-2512",
        source="modelscope",
        revision="v1.0",
        device="cpu",
        dtype="bfloat16",
        max_new_tokens=64,
        cpu_threads=2,
        engine_options={"vad_model": "fsmn-vad"},
    )
    engine = FunASREngine(config)
    engine.load()
    assert fake_auto_model == [
        {
            "model": "FunAudioLLM/Fun-ASR-MLT-Nano-2512",
            "hub": "ms",
            "model_revision": "v1.0",
            "device": "cpu",
            "llm_dtype": "bf16",
            "disable_update": True,
            "disable_pbar": True,
            "ncpu": 2,
            "max_length": 64,
            "vad_model": "fsmn-vad",
        }
    ]
    assert engine.languages is None  # a model class with no language table accepts any


def test_load_kwargs_defaults(fake_auto_model, tiny_config, tiny_model_dir: Path) -> None:
    FunASREngine(tiny_config(source="local", dtype="auto")).load()
    FunASREngine(tiny_config(model="org/model", source="huggingface")).load()
    local, hub = fake_auto_model
    assert local["model"] == str(tiny_model_dir.resolve())
    assert "hub" not in local
    assert (local["llm_dtype"], "ncpu" in local, "max_length" in local) == ("fp32", False, False)
    assert hub["hub"] == "hf"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_load_error(tiny_config, fake_auto_model) -> None:
    with pytest.raises(ModelLoadError, match="cuda"):
        FunASREngine(tiny_config(device="cuda")).load()
    FunASREngine(tiny_config(device="auto")).load()
    assert fake_auto_model[0]["device"] == "cpu"


def test_int8_is_a_load_error(tiny_config, fake_auto_model) -> None:
    with pytest.raises(ModelLoadError, match="int8"):
        FunASREngine(tiny_config(dtype="int8")).load()


def test_transcribe_needs_load_and_matching_lengths(tiny_config, tiny_engine, clips) -> None:
    with pytest.raises(ModelNotReadyError, match="not loaded"):
        FunASREngine(tiny_config()).transcribe(clips[:1], [PLAIN])
    with pytest.raises(ValueError, match="2 audios but 1 options"):
        tiny_engine.transcribe(clips[:2], [PLAIN])


def test_warmup_runs(tiny_engine: FunASREngine) -> None:
    tiny_engine.warmup(batch_size=2, seconds=0.5)
