"""A tiny random-weight Fun-ASR-Nano checkpoint, so tests exercise the real funasr code path.

The checkpoint has the released model's architecture (SenseVoiceEncoderSmall encoder,
``Transformer`` adaptor, Qwen3 decoder, HF tokenizer with the ChatML speech tokens) and its
file layout (``config.yaml``, ``model.pt``, ``configuration.json`` whose ``file_path_metas``
anchor relative paths to the model directory, ``Qwen3-0.6B/``), so
``funasr.AutoModel(model=DIR)`` loads it exactly like the real one; it is ~1 MB and decodes
in milliseconds on CPU. Its transcripts are gibberish, but they depend on the audio and are
deterministic, which is what batching, parity and plumbing tests need.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

#: Same sub-directory name as the released checkpoints, so the layout is the real one.
LLM_DIR = "Qwen3-0.6B"
#: Every special token Fun-ASR-Nano's prompt uses (``data_load_speech``), plus the Qwen3
#: thinking tags it appends when ``dataset_conf.do_think`` is false.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|startofspeech|>",
    "<|endofspeech|>",
    "<think>",
    "</think>",
)
#: Whole-word tokens for the fixed prompt text, so the audio is most of the decoder's context.
_PROMPT_WORDS = (
    "system\n",
    "user\n",
    "assistant\n",
    "You are a helpful assistant.",
    "语音转写",
    "\uff1a",  # the full-width colon ending the task prompt
)
#: Files whose presence means a generation finished (it is written to a temp dir first).
_FILES = (
    "config.yaml",
    "configuration.json",
    "model.pt",
    f"{LLM_DIR}/config.json",
    f"{LLM_DIR}/tokenizer.json",
    f"{LLM_DIR}/tokenizer_config.json",
)
#: Written last; records the generator version the checkpoint came from.
_STAMP = "tiny_model.json"
#: Bump when the generated checkpoint changes, so cached copies are regenerated.
_VERSION = 1
_ENV_DIR = "ASR_SERVE_TINY_MODEL_DIR"

_ENCODER_DIM = 32
_LLM_DIM = 64
#: Default cap on generated tokens: a random decoder rarely emits ``<|im_end|>``, and
#: ``FunASRNano`` reads ``max_length`` from its config (default 512).
_MAX_LENGTH = 32


def _config(llm_path: str) -> dict:
    """``config.yaml`` of the released model with every size cut down."""
    return {
        "model": "FunASRNano",
        "audio_encoder": "SenseVoiceEncoderSmall",
        "audio_encoder_conf": {
            "output_size": _ENCODER_DIM,
            "attention_heads": 4,
            "linear_units": 64,
            "num_blocks": 2,
            "tp_blocks": 1,
            "dropout_rate": 0.0,
            "positional_dropout_rate": 0.0,
            "attention_dropout_rate": 0.0,
            "input_layer": "pe",
            "pos_enc_class": "SinusoidalPositionEncoder",
            "normalize_before": True,
            "kernel_size": 11,
            "sanm_shfit": 0,
            "selfattention_layer_type": "sanm",
            "freeze": True,
        },
        "audio_adaptor": "Transformer",
        "audio_adaptor_conf": {
            "downsample_rate": 1,
            # Off, so funasr puts one LLM position per encoder frame and the decoder hears
            # the whole clip (on, it takes the first ~1/8 of the adaptor's frames).
            "use_low_frame_rate": False,
            "ffn_dim": 64,
            "llm_dim": _LLM_DIM,
            "encoder_dim": _ENCODER_DIM,
            "n_layer": 1,
            "attention_heads": 4,
            "freeze": True,
        },
        "llm": "Qwen3-0.6b",
        "llm_conf": {
            "hub": "hf",
            "freeze": True,
            "llm_dtype": "fp32",
            "init_param_path": llm_path,
            "use_lora": False,
        },
        "frontend": "WavFrontend",
        "frontend_conf": {
            "fs": 16000,
            "window": "hamming",
            "n_mels": 80,
            "frame_length": 25,
            "frame_shift": 10,
            "lfr_m": 7,
            "lfr_n": 6,
            "dither": 0.0,
            "cmvn_file": None,
        },
        "tokenizer": "HuggingfaceTokenizer",
        "tokenizer_conf": {"unk_symbol": "<unk>", "init_param_path": llm_path},
        "max_length": _MAX_LENGTH,
    }


def _configuration_json() -> dict:
    """ModelScope's ``configuration.json``: funasr joins ``file_path_metas`` to the model dir."""
    return {
        "framework": "pytorch",
        "task": "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "file_path_metas": {
            "init_param": "model.pt",
            "config": "config.yaml",
            "tokenizer_conf": {"init_param_path": LLM_DIR},
            "llm_conf": {"init_param_path": LLM_DIR},
        },
    }


def _save_tokenizer(llm_dir: Path) -> int:
    """Byte-level BPE without merges: 256 byte tokens spell any text, the Chinese prompt too."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
    )
    backend.add_tokens([AddedToken(t, normalized=False) for t in _PROMPT_WORDS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.save_pretrained(str(llm_dir))
    # transformers 5 names the class TokenizersBackend, which 4.x cannot load.
    config_file = llm_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(config_file.read_text())
    tokenizer_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(tokenizer_config, indent=2))
    return len(tokenizer)


def _save_llm_config(llm_dir: Path, vocab_size: int) -> None:
    """Qwen3 with hidden 64 and 2 layers; untied head so logits are not just embedding echoes."""
    from transformers import AutoTokenizer, Qwen3Config

    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir))
    Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=_LLM_DIM,
        intermediate_size=2 * _LLM_DIM,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    ).save_pretrained(str(llm_dir))


def _reinit_llm(llm: torch.nn.Module) -> None:
    """Undo HF's init (std 0.02, which makes a random LM ignore its input and repeat a token).

    PyTorch's defaults, N(0, 1) embeddings / head and U(+-1/sqrt(fan_in)) linears, give
    logits spread widely enough that the argmax follows the audio.
    """
    for module in llm.modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Embedding):
            module.reset_parameters()


def write_checkpoint(
    out_dir: Path,
    *,
    seed: int,
    config: Callable[[str], dict] | None = None,
    llm_overrides: dict | None = None,
) -> None:
    """Write a random-weight FunASRNano in the released layout (config, weights, LLM dir).

    ``config`` maps the LLM directory to the model config (default: the tiny one);
    ``llm_overrides`` resize the Qwen3 config. The benchmarks' full-size model is this with
    the released sizes.
    """
    from funasr.models.fun_asr_nano.model import FunASRNano
    from transformers import Qwen3Config

    make_config = config or _config
    out_dir = Path(out_dir)
    llm_dir = out_dir / LLM_DIR
    llm_dir.mkdir(parents=True, exist_ok=True)
    _save_llm_config(llm_dir, _save_tokenizer(llm_dir))
    if llm_overrides:
        llm_config = Qwen3Config.from_pretrained(str(llm_dir))
        for key, value in llm_overrides.items():
            setattr(llm_config, key, value)
        llm_config.save_pretrained(str(llm_dir))

    # Build with an absolute LLM path; the files on disk keep the released relative one.
    built = make_config(str(llm_dir))
    torch.manual_seed(seed)
    model = FunASRNano(
        audio_encoder=built["audio_encoder"],
        audio_encoder_conf=dict(built["audio_encoder_conf"]),
        audio_adaptor=built["audio_adaptor"],
        audio_adaptor_conf=dict(built["audio_adaptor_conf"]),
        llm=built["llm"],
        llm_conf=dict(built["llm_conf"]),
        input_size=80 * 7,  # n_mels * lfr_m: WavFrontend stacks 7 frames
    )
    _reinit_llm(model.llm)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out_dir / "model.pt")
    on_disk = make_config(LLM_DIR)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(on_disk, sort_keys=False))
    (out_dir / "configuration.json").write_text(json.dumps(_configuration_json(), indent=2))


def generate_tiny_model(out_dir: Path, *, seed: int = 0) -> Path:
    """Write a tiny Fun-ASR-Nano checkpoint to ``out_dir``; the same seed gives the same bytes."""
    out_dir = Path(out_dir)
    write_checkpoint(out_dir, seed=seed)
    (out_dir / _STAMP).write_text(json.dumps({"version": _VERSION, "seed": seed}))
    return out_dir


def _is_complete(path: Path) -> bool:
    stamp = path / _STAMP
    if not stamp.is_file() or not all((path / f).is_file() for f in _FILES):
        return False
    return json.loads(stamp.read_text()).get("version") == _VERSION


def default_tiny_model_dir() -> Path:
    """``$ASR_SERVE_TINY_MODEL_DIR``, else ``~/.cache/asr-serve/tiny-fun-asr-nano``."""
    env = os.environ.get(_ENV_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "asr-serve" / "tiny-fun-asr-nano"


def ensure_tiny_model(out_dir: Path | None = None) -> Path:
    """Return a complete tiny checkpoint at ``out_dir``, generating it once.

    Generation goes to a sibling temp dir renamed into place, so concurrent callers and
    interrupted runs never leave a half-written model where a complete one is expected.
    """
    out_dir = Path(out_dir) if out_dir is not None else default_tiny_model_dir()
    if _is_complete(out_dir):
        return out_dir
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / _STAMP).exists():
        raise FileExistsError(
            f"{out_dir} exists and is not a tiny model; remove it or pick another"
        )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        generate_tiny_model(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private
        if out_dir.exists() and not _is_complete(out_dir):
            shutil.rmtree(out_dir)  # empty, or a stale version of ours
        try:
            tmp.rename(out_dir)
        except OSError:
            if not _is_complete(out_dir):  # another process did not win the race either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.tiny_model",
        description="Write a tiny random-weight Fun-ASR-Nano checkpoint for tests.",
    )
    parser.add_argument("out_dir", type=Path, help="directory to write the checkpoint to")
    parser.add_argument("--seed", type=int, default=0, help="weights seed (default: 0)")
    args = parser.parse_args(argv)
    print(generate_tiny_model(args.out_dir, seed=args.seed))


if __name__ == "__main__":
    main()
