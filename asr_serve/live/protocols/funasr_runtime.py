"""FunASR's runtime WebSocket protocol (``offline`` / ``online`` / ``2pass``) on the live core.

Clients written for FunASR's C++ runtime (``runtime/docs/websocket_protocol.md``: its H5
page, ``funasr_wss_client.py``, their many copies) switch to this server by changing the
URL. Where FunASR's own servers disagree, this follows the C++ 2pass server. The route
authenticates and accepts the WebSocket, then runs a :class:`FunASRRuntimeConnection` on it.

Client to server: a JSON text frame (at most ``live.max_control_frame_bytes``, nested at
most 32 deep) configures an input; binary frames carry its audio;
``{"is_speaking": false}`` ends it. Later text frames change the fields they carry, and a
connection may send one input after another (each starting with a configuration frame or
its first audio). Fields:

- ``mode``: ``2pass`` (default), ``online`` or ``offline``;
- ``wav_name``: echoed in every answer (default ``wav-default-id``, as the C++ runtime), so
  at most ``live.max_id_chars`` long;
- ``wav_format``: ``pcm`` (default): PCM16 little-endian mono at ``audio_fs`` Hz (8-96 kHz,
  default 16000). Anything else (``wav``, ``mp3``, ``others`` ...): a whole file in any
  container, sent in as many frames as it takes (at most ``max_file_bytes``) and, at the end
  of the input, transcribed as a file request's audio is: decoded (read in place, or by the
  decoder), split at pauses when long, its pieces batched with everyone's and stitched;
  ``audio_fs`` is then the file's own;
- ``hotwords``: FunASR's JSON object text of word to weight (``"{\\"阿里巴巴\\": 20}"``), or
  a plain string of words separated by commas (or, without commas, by spaces): the words
  become the model's hotwords (Fun-ASR) or prompt (Whisper), at most
  ``limits.max_prompt_chars`` of them joined. Weights are dropped: in the runtime they weight
  its FST hotword graph, which no model here has;
- ``itn``: inverse text normalisation, where the model has the switch (Fun-ASR; Whisper
  always writes normalised text, as the runtime without an ITN model ignores it);
- ``svs_lang``: the language, an ISO code (``auto``: the model's choice), as the runtime
  reads it for SenseVoiceSmall;
- ``is_speaking``: ``false`` ends the input (``is_finished: true`` too, as the C++ runtime);
  ``is_end: true`` beside it asks for FunASR's Python-server acknowledgement (below).

Ignored, because the runtime itself treats them as hints: ``chunk_size`` (its streaming
Paraformer's chunk and look-ahead; partials here follow ``partial_interval_s``),
``chunk_interval``, ``encoder_chunk_look_back``, ``decoder_chunk_look_back`` (the Python
server's streaming settings, which the C++ runtime ignores), and ``svs_itn`` (the runtime
reads it only for SenseVoiceSmall; ``itn`` is the switch here). Unknown fields are ignored,
as the runtime ignores them.

Server to client (JSON text): PCM utterances are cut at pauses by the server's VAD.

- ``{"mode": "2pass-online", "wav_name", "text", "is_final": false}``: text of the open
  utterance that became stable, to append (``online`` in ``online`` mode);
- ``{"mode": "2pass-offline", "wav_name", "text", "is_final", "timestamp", "stamp_sents"}``:
  one per utterance, its whole text, replacing its online text (``offline`` in ``offline``
  mode; in ``online`` mode the utterance's end is one more ``online`` message with the rest
  of its text). ``timestamp`` is a JSON string of ``[start_ms, end_ms]`` per word and
  ``stamp_sents`` one object per engine segment, as the runtime sends them, when the model
  gives word timings (ms since the input's start). A whole file is one such result, its
  input's last;
- the input's last message, after ``is_speaking: false``, has ``is_final: true``: always
  exactly one, with empty text if the end held no speech (then it carries the mode of the
  utterance results). With ``is_end: true`` it also carries ``"is_end": true``;
- errors: ``{"wav_name", "text": "", "is_final": false, "error": "<message>", "code"}``;
  no ``mode``, so clients that route results by mode skip it. A refused frame changes
  nothing and the connection goes on; an unknown ``?model=`` gets it, then close 1008.

The server never closes a healthy connection: the client does, after the last answer. Close
codes are every door's (:mod:`asr_serve.live.protocols.connection`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.websockets import WebSocket

from asr_serve.config import ServerVAD
from asr_serve.errors import ASRServeError, PayloadTooLargeError
from asr_serve.live.core import CommitEmptyError, LiveSession, SessionSettings
from asr_serve.live.events import Committed, Completed, Failed, LiveEvent, Partial
from asr_serve.live.partials import units
from asr_serve.live.pcm import InputFormat
from asr_serve.live.protocols.connection import (
    LiveConnection,
    LiveContext,
    ProtocolError,
    check_length,
)
from asr_serve.live.protocols.funasr_runtime_messages import (
    ANSWER_MODES,
    ErrorMessage,
    InputConfig,
    Result,
    StampSentence,
    parse_frame,
    stamps,
)
from asr_serve.live.transcribe import TranscribeFile

#: Subprotocols to accept with: FunASR's Python server speaks ``binary``, its client offers it.
SUBPROTOCOLS = ("binary",)


# The connection -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Input:
    """One input: from its configuration (or first audio) to the message that ends it."""

    config: InputConfig
    start_ms: int  # where it starts on the session's clock: its timestamps count from here
    items: list[str] = field(default_factory=list)  # utterances committed during it
    final_item: str | None = None  # the one whose result ends it, once it is over
    ack: bool = False  # its end asked for ``is_end`` on its final message


class FunASRRuntimeConnection(LiveConnection):
    protocol = "funasr_runtime"
    subprotocols = SUBPROTOCOLS

    def __init__(
        self,
        websocket: WebSocket,
        context: LiveContext,
        transcribe_file: TranscribeFile,
    ) -> None:
        super().__init__(websocket, context)
        self._transcribe_file = transcribe_file
        self._input = _Input(InputConfig(), start_ms=0)
        self._core: LiveSession | None = None  # from the first configuration frame on
        self._file = bytearray()  # the current input's file, when it sends one
        self._file_refused = False  # it went over max_file_bytes: the rest is dropped
        self._audio_bytes = 0  # audio the current input sent
        self._clock_ms = 0.0  # PCM audio taken, on the session's clock
        self._items: dict[str, _Input] = {}  # committed items not ended yet, and their input
        self._sent: dict[str, str] = {}  # online text sent per open item

    async def open(self) -> None:
        self._model = self.requested_model()

    async def end(self, *, drain: bool) -> None:
        if self._core is not None:
            await self._core.close(drain=drain)

    async def on_text(self, text: str) -> None:
        self.check_text_size(text)
        frame = parse_frame(text)
        check_length(frame.wav_name, self.config.max_id_chars, "wav_name")
        if frame.hotwords is not None:
            prompt = ",".join(frame.hotwords)
            check_length(prompt, self.context.limits.max_prompt_chars, "hotwords")
        current = self._input.config
        config = current.merged(frame)
        if self._audio_bytes and (
            config.wav_format != current.wav_format or config.audio_fs != current.audio_fs
        ):
            raise ProtocolError(
                "invalid_value",
                "wav_format and audio_fs cannot change in the middle of an input; send "
                '{"is_speaking": false} first',
                param="wav_format" if config.wav_format != current.wav_format else "audio_fs",
            )
        if self._core is None:
            self._core = self.new_session(self._settings(config), self._render)
        elif config != current:
            await self._core.update(self._settings(config))
        self._input.config = config
        if frame.ends_input:
            await self._end_input(ack=bool(frame.is_end))

    async def on_bytes(self, data: bytes) -> None:
        if self._core is None:
            raise ProtocolError(
                "configuration_required",
                "Send the JSON configuration frame (mode, wav_name, wav_format, audio_fs, "
                "is_speaking ...) before any audio",
            )
        self.check_frame_size(data)
        config = self._input.config
        if config.is_file:
            self._take_file(data)
        else:
            await self._core.append(data)
            self._clock_ms += len(data) * 500 / config.audio_fs  # PCM16: 2 bytes a sample
        self._audio_bytes += len(data)
        self.audio_taken(data)

    def send_error(self, error: ASRServeError) -> None:
        wav_name = self._input.config.wav_name
        self.send(
            ErrorMessage(wav_name=wav_name, error=error.message, code=error.code).model_dump_json()
        )

    def _settings(self, config: InputConfig) -> SessionSettings:
        return SessionSettings(
            model=self._model,
            input_format=InputFormat(rate=config.audio_fs),
            turn_detection=ServerVAD(),
            options=config.options(),
            partials=config.mode != "offline",
        )

    def _take_file(self, data: bytes) -> None:
        if self._file_refused:
            return
        if len(self._file) + len(data) > self.config.max_file_bytes:
            self._file = bytearray()
            self._file_refused = True
            raise PayloadTooLargeError(
                f"A file may be at most {self.config.max_file_bytes} bytes; the rest of this "
                "input is dropped",
                param="audio",
            )
        self._file += data

    async def _end_input(self, *, ack: bool) -> None:
        """The input is over: close its last utterance, or transcribe its file, and make sure
        its last message says ``is_final``; what follows is a new input."""
        assert self._core is not None
        data, self._file, self._file_refused = bytes(self._file), bytearray(), False
        if not self._input.config.is_file:
            try:
                await self._core.commit()
            except CommitEmptyError:  # no speech open, or too little to transcribe: drop it
                await self._core.clear()
        ended, self._input = self._input, _Input(self._input.config, round(self._clock_ms))
        self._audio_bytes = 0
        ended.ack = ack
        if ended.config.is_file:
            await self._end_file(ended, data)
            return
        open_items = [item for item in ended.items if item in self._items]
        if open_items:
            ended.final_item = open_items[-1]
        else:
            self._send_result(ended, "", final=True)

    async def _end_file(self, ended: _Input, data: bytes) -> None:
        """A whole file's result is its input's final message (empty when there was no file,
        or it could not be transcribed: not audio, too long, an option the model lacks)."""
        result = None
        if data:
            try:
                result = await self._transcribe_file(data, self._model, ended.config.options())
            except ASRServeError as exc:
                self.send_error(exc)
            self.waited()  # for the model, not for its client
        if result is None:
            self._send_result(ended, "", final=True)
        else:
            timing = stamps(result, offset_ms=0)
            self._send_result(ended, result.text.strip(), final=True, timing=timing)

    def _render(self, event: LiveEvent) -> None:
        """The core's events as the runtime's messages."""
        match event:
            case Committed(item_id):
                self._input.items.append(item_id)
                self._items[item_id] = self._input
            case Partial(item_id, _, delta, _) if delta and self._input.config.mode != "offline":
                self._sent[item_id] = self._sent.get(item_id, "") + delta
                self._send_result(self._input, delta, final=False, online=True)
            case Completed(item_id, transcript, delta, start_ms, _, result):
                owner = self._items.pop(item_id)
                final = item_id == owner.final_item
                sent = self._sent.pop(item_id, "")
                if owner.config.mode == "online":
                    # Online clients only append: the rest of the text or, where the final
                    # revised what was sent, its words past as many as were sent.
                    rest = delta
                    if rest is None:
                        rest = "".join(units(transcript)[len(units(sent)) :])
                    if rest or final:
                        self._send_result(owner, rest, final=final)
                elif transcript or final:
                    timing = stamps(result, start_ms - owner.start_ms)
                    self._send_result(owner, transcript, final=final, timing=timing)
            case Failed(item_id, error):
                owner = self._items.pop(item_id)
                self._sent.pop(item_id, None)
                self.send_error(error)
                if item_id == owner.final_item:
                    self._send_result(owner, "", final=True)

    def _send_result(
        self,
        owner: _Input,
        text: str,
        *,
        final: bool,
        online: bool = False,
        timing: tuple[str, list[StampSentence]] | None = None,
    ) -> None:
        """A result of the input ``owner`` in its mode's terms: ``online`` for a partial's
        text, else an utterance's (or the input's final) result."""
        timestamp, stamp_sents = timing or (None, None)
        message = Result(
            mode=ANSWER_MODES[owner.config.mode][0 if online else 1],
            wav_name=owner.config.wav_name,
            text=text,
            is_final=final,
            timestamp=timestamp,
            stamp_sents=stamp_sents,
            is_end=True if final and owner.ack else None,
        )
        self.send(message.model_dump_json(exclude_none=True))
