"""Who spoke, through real Serve and the official ``openai`` client: files in
``diarized_json`` (plain, with known speakers, a count, streamed), their refusals, and a
realtime session whose model diarizes; FunASR's runtime door's ``spk``.

One application serves the embedded Whisper tiny.en with the Speakers deployment. The
conversations are two espeak-ng voices taking turns (:mod:`devtools.conversation`).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import websockets

from devtools.conversation import (
    LINES,
    VOICES,
    Conversation,
    attributed_share,
    converse,
    utterances_right,
)
from devtools.speech import encode, pcm16
from devtools.tiny_campplus import write_campplus
from tests.e2e.serving import (
    SPEAKERS_ON,
    TINY_MODEL,
    WHISPER,
    deploy,
    tiny_args,
    undeploy,
    whisper_model,
)
from tests.support.funasr_clients import runtime_results, runtime_session
from tests.support.realtime import COMPLETED, SEGMENT, speaker_session

pytestmark = pytest.mark.e2e

APP = "diarize"
CAMPPLUS_APP = "diarize-campplus"
ANN, BOB = VOICES[0], VOICES[1]


@pytest.fixture(scope="module")
def base_url(serve_url: str) -> Iterator[str]:
    deploy(APP, {"models": [whisper_model()], "speakers": SPEAKERS_ON})
    yield f"{serve_url}/{APP}"
    undeploy(APP)


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def talk() -> Conversation:
    """Six turns, about 35 s: over the 30 s past which OpenAI needs a chunking_strategy."""
    return converse([((ANN, BOB)[i % 2], LINES[i]) for i in range(6)])


def _wav(conversation: Conversation) -> io.BytesIO:
    f = io.BytesIO(encode(conversation.audio, 16000, "wav"))
    f.name = "talk.wav"
    return f


def _data_url(voice, text: str) -> str:
    wav = encode(voice.say(text), 16000, "wav")
    return "data:audio/wav;base64," + base64.b64encode(wav).decode()


def _diarized(client: openai.OpenAI, talk: Conversation, **fields):
    return client.audio.transcriptions.create(
        model=WHISPER,
        file=_wav(talk),
        response_format="diarized_json",
        chunking_strategy="auto",
        **fields,
    )


def _refused(call, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        call()
    assert err.value.body["param"] == param, err.value.body  # type: ignore[index]


def test_diarized_json_names_speakers_by_letter(client: openai.OpenAI, talk: Conversation) -> None:
    result = _diarized(client, talk)
    assert result.task == "transcribe" and abs(result.duration - talk.duration_s) < 0.01
    assert {s.speaker for s in result.segments} == {"A", "B"}
    assert result.segments[0].speaker == "A" and result.segments[0].id == "seg_0"
    assert all(s.type == "transcript.text.segment" for s in result.segments)
    assert "budget" in result.text.lower()
    # The request named no language: what the model took is in ``languages``, as in ``json``.
    assert result.model_extra["languages"] == [{"code": "en"}]
    hypothesis = [(s.start, s.end, s.speaker) for s in result.segments]
    assert attributed_share(talk.turns, hypothesis) >= 0.9


def test_known_speakers_name_them(client: openai.OpenAI, talk: Conversation) -> None:
    result = _diarized(
        client,
        talk,
        known_speaker_names=["customer", "agent"],
        known_speaker_references=[_data_url(BOB, LINES[9]), _data_url(ANN, LINES[12])],
    )
    named = [
        (s.start, s.end, {"agent": "ann", "customer": "bob"}[s.speaker]) for s in result.segments
    ]
    assert attributed_share(talk.turns, named, by_name=True) >= 0.9


def test_a_speaker_count_is_honoured(client: openai.OpenAI, talk: Conversation) -> None:
    """``num_speakers`` (an extension; the ``openai`` client sends it as ``extra_body``)
    fixes how many speakers the file's clips are grouped into."""
    one = _diarized(client, talk, language="en", extra_body={"num_speakers": 1})
    assert {s.speaker for s in one.segments} == {"A"}
    assert "languages" not in one.model_extra  # named, not detected
    two = _diarized(client, talk, extra_body={"num_speakers": 2})
    assert attributed_share(talk.turns, [(s.start, s.end, s.speaker) for s in two.segments]) >= 0.9


def test_streamed_segments_carry_speakers(client: openai.OpenAI, talk: Conversation) -> None:
    events = list(_diarized(client, talk, stream=True))
    segments = [e for e in events if e.type == "transcript.text.segment"]
    assert events[-1].type == "transcript.text.done" and segments
    assert [language.code for language in events[-1].languages] == ["en"]
    assert {e.speaker for e in segments} == {"A", "B"}
    assert [e.id for e in segments] == [f"seg_{i}" for i in range(len(segments))]
    assert attributed_share(talk.turns, [(e.start, e.end, e.speaker) for e in segments]) >= 0.9


def test_what_diarization_refuses(client: openai.OpenAI, talk: Conversation) -> None:
    create = client.audio.transcriptions.create
    long_wav = _wav(talk)
    _refused(
        lambda: create(model=WHISPER, file=long_wav, response_format="diarized_json"),
        "chunking_strategy",
    )
    short = converse([(ANN, LINES[0])])
    for refs, param in (
        (["data:audio/wav;base64,@@@"], "known_speaker_references"),
        (["https://example.com/a.wav"], "known_speaker_references"),
        ([_data_url(ANN, "Yes.")], "known_speaker_references"),  # under 2 s
        ([_data_url(ANN, LINES[0])] * 5, "known_speaker_references"),  # at most 4, at once
    ):
        names = [f"n{i}" for i in range(len(refs))]
        _refused(
            lambda refs=refs, names=names: create(
                model=WHISPER,
                file=_wav(short),
                response_format="diarized_json",
                known_speaker_names=names,
                known_speaker_references=refs,
            ),
            param,
        )
    _refused(
        lambda: create(model=WHISPER, file=_wav(short), known_speaker_names=["a"]),
        "known_speaker_names",
    )
    _refused(
        lambda: create(
            model=WHISPER, file=_wav(short), response_format="diarized_json", include=["logprobs"]
        ),
        "include",
    )


def test_a_realtime_session_labels_each_utterance(base_url: str) -> None:
    """``<model>-diarize`` selects speakers, as OpenAI's diarizing model does: a segment
    event with the speaker before each item's completion; labels stable all session."""
    voices = [ANN, BOB, ANN, BOB]
    talk = converse([(v, LINES[i]) for i, v in enumerate(voices)], pause_s=1.2, lead_s=1.5)
    events = asyncio.run(speaker_session(base_url, WHISPER, talk))
    segments = [e for e in events if e.type == SEGMENT]
    completed = [e for e in events if e.type == COMPLETED]
    assert [s.item_id for s in segments] == [c.item_id for c in completed]
    assert segments[0].speaker == "A" and {s.speaker for s in segments} == {"A", "B"}
    assert utterances_right(talk.turns, [(s.start, s.end, s.speaker) for s in segments]) == 1.0
    assert [s.text for s in segments] == [c.transcript for c in completed]


def _funasr_url(base_url: str, path: str, model: str) -> str:
    return base_url.replace("http://", "ws://", 1) + f"{path}?model={model}"


def _sentences(results: list[dict]) -> list[tuple[float, float, int]]:
    return [
        (s["start"] / 1000, s["end"] / 1000, s["spk"]) for r in results for s in r["stamp_sents"]
    ]


def test_funasr_runtime_sentences_carry_spk(base_url: str, talk: Conversation) -> None:
    """FunASR's runtime door with ``<model>-diarize``: each sentence result's
    ``stamp_sents`` carry ``spk``, an integer from 0 as funasr's own sentence output: per
    utterance (stable all connection) live, per sentence for a whole file."""
    url = _funasr_url(base_url, "/v1/funasr/ws", f"{WHISPER}-diarize")
    live = converse([(v, LINES[i]) for i, v in enumerate([ANN, BOB, ANN])], pause_s=1.2)
    messages = asyncio.run(runtime_session(url, pcm16(live.audio, 16_000), speed=None))
    heard = _sentences(runtime_results(messages, "2pass-offline"))
    assert heard[0][2] == 0 and {spk for *_, spk in heard} == {0, 1}
    assert utterances_right(live.turns, heard) == 1.0

    wav = encode(talk.audio, 16_000, "wav")
    messages = asyncio.run(runtime_session(url, wav, speed=None, mode="offline", wav_format="wav"))
    [result] = runtime_results(messages, "offline")
    assert attributed_share(talk.turns, _sentences([result])) >= 0.9
    plain = _funasr_url(base_url, "/v1/funasr/ws", WHISPER)
    messages = asyncio.run(
        runtime_session(plain, wav, speed=None, mode="offline", wav_format="wav")
    )
    assert all("spk" not in s for s in runtime_results(messages, "offline")[0]["stamp_sents"])


def test_funasr_realtime_door_has_no_speaker_field(base_url: str) -> None:
    """Fun-ASR-Nano's realtime protocol has no place for a speaker: a diarizing model name
    is refused there, saying where speakers are."""

    async def refused() -> tuple[dict, int | None]:
        url = _funasr_url(base_url, "/v1/funasr/realtime", f"{WHISPER}-diarize")
        async with websockets.connect(url) as ws:
            error = json.loads(await ws.recv())
            await ws.wait_closed()
            return error, ws.close_code

    error, code = asyncio.run(refused())
    assert code == 1008 and "/v1/funasr/ws" in json.dumps(error), error


@pytest.fixture(scope="module")
def campplus_url(
    serve_url: str, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Fun-ASR-Nano with CAM++ as the speaker encoder, as a ModelScope deployment would
    run them; both tiny generated checkpoints, loaded by funasr from local directories."""
    campplus = write_campplus(tmp_path_factory.mktemp("campplus"))
    speakers = {"encoder": "cam++", "encoder_model": str(campplus), "encoder_source": "local"}
    prefix = deploy(CAMPPLUS_APP, tiny_args(tiny_model_dir, speakers=speakers))
    yield f"{serve_url}{prefix}"
    undeploy(CAMPPLUS_APP)


def test_campplus_serves_diarized_json_and_live_speakers(
    campplus_url: str, talk: Conversation
) -> None:
    """The Speakers deployment on CAM++ (random weights: who is who is arbitrary, but the
    path is the real one): a file's segments get speakers, a live utterance its speaker."""
    client = openai.OpenAI(base_url=f"{campplus_url}/v1", api_key="unused", max_retries=0)
    result = client.audio.transcriptions.create(
        model=TINY_MODEL,
        file=_wav(talk),
        response_format="diarized_json",
        chunking_strategy="auto",
        extra_body={"num_speakers": 2},
    )
    assert result.segments and {s.speaker for s in result.segments} <= {"A", "B"}
    live = converse([(ANN, LINES[0])], lead_s=1.5)
    events = asyncio.run(speaker_session(campplus_url, TINY_MODEL, live))
    assert [e.speaker for e in events if e.type == SEGMENT] == ["A"]
