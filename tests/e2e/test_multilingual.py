"""Many languages through real Serve: the CPU quickstart's two models (Whisper tiny.en, the
default, and the shipped multilingual Whisper base), driven by the official ``openai``
client where it has the call and by FunASR's protocols' own clients.

Detection (``verbose_json.language``, ``languages`` in ``json`` and the SSE done event),
translations in every format (routed to Whisper base when no model is named), and live
sessions in French: the language set, and detected per utterance.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import srt
import webvtt

from devtools.languages import COFFEE, PHRASES, SENTENCES, VOICES, speak
from devtools.speech import Speech, encode, pcm16, speech_with_pauses
from devtools.text import normalize
from tests.e2e.serving import WHISPER, deploy, undeploy, whisper_model
from tests.support.funasr_clients import realtime_session, runtime_results, runtime_session
from tests.support.realtime import COMPLETED, DELTA, client_for, stream_with_sdk

pytestmark = pytest.mark.e2e

APP = "multilingual"
BASE = "whisper-base"
BASE_MODEL = whisper_model(name=BASE, model="embedded-multilingual")
#: Two French utterances a live session cuts at the pause between them.
FRENCH = [SENTENCES["fr"][0], SENTENCES["fr"][2]]


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def base_url(serve_url: str) -> Iterator[str]:
    args = {
        "models": [whisper_model(), BASE_MODEL],
        "default_model": WHISPER,
        # Whisper base takes about a second a decode on the shared 2-core CPU: a partial every
        # 0.5 s of audio would be stale before it ran, and be shed.
        "live": {"partial_interval_s": 1.0, "partial_max_wait_s": 2.0},
    }
    options = {f"ASR-{name}": {"ray_actor_options": {"num_cpus": 0.5}} for name in (WHISPER, BASE)}
    prefix = deploy(APP, args, options)
    yield f"{serve_url}{prefix}"
    undeploy(APP)


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def wavs() -> dict[str, bytes]:
    return {lang: encode(speak(lang, text), 16000, "wav") for lang, text in PHRASES.items()}


def _file(data: bytes, name: str = "speech.wav") -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name
    return f


def _overlap(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference), set(normalize(hypothesis))
    return sum(w in hyp for w in ref) / len(ref)


def test_models_are_listed_with_the_multilingual_one(client: openai.OpenAI) -> None:
    models = {m.id: m for m in client.models.list()}
    assert list(models) == [WHISPER, BASE]


@pytest.mark.parametrize("lang", list(PHRASES))
def test_no_language_is_detected_and_reported(client, wavs, lang) -> None:
    verbose = client.audio.transcriptions.create(
        model=BASE, file=_file(wavs[lang]), response_format="verbose_json"
    )
    assert verbose.language == lang
    assert _overlap(PHRASES[lang], verbose.text) >= 0.6, verbose.text
    plain = client.audio.transcriptions.create(model=BASE, file=_file(wavs[lang]))
    assert [language.code for language in plain.languages] == [lang]
    # Not verbose's text word for word: its segment times come from a prompt that asks for
    # timestamp tokens, which can change what Whisper hears (a French greeting, once).
    assert _overlap(PHRASES[lang], plain.text) >= 0.6, plain.text


def test_a_named_language_is_used_and_not_reported_as_detected(client, wavs) -> None:
    plain = client.audio.transcriptions.create(model=BASE, file=_file(wavs["fr"]), language="fr")
    assert plain.languages is None and _overlap(PHRASES["fr"], plain.text) >= 0.6
    verbose = client.audio.transcriptions.create(
        model=BASE, file=_file(wavs["es"]), language="es", response_format="verbose_json"
    )
    assert verbose.language == "es"


def test_a_language_the_model_lacks_is_a_400_naming_it(client, wavs) -> None:
    for model, language in ((WHISPER, "fr"), (BASE, "xx")):
        with pytest.raises(openai.BadRequestError) as err:
            client.audio.transcriptions.create(
                model=model, file=_file(wavs["fr"]), language=language
            )
        assert err.value.param == "language"
        assert f"language {language!r} is not supported" in err.value.message


def test_the_stream_s_done_event_names_the_detected_language(client, wavs) -> None:
    *deltas, done = list(
        client.audio.transcriptions.create(model=BASE, file=_file(wavs["es"]), stream=True)
    )
    assert deltas and done.type == "transcript.text.done"
    assert [language.code for language in done.languages] == ["es"]
    assert _overlap(PHRASES["es"], done.text) >= 0.6, done.text


@pytest.fixture(scope="module")
def coffee() -> bytes:
    return encode(speak("fr", COFFEE["fr"]), 16000, "mp3")


def _english(text: str) -> bool:
    words = normalize(text)
    return "coffee" in words and "café" not in words


def test_translations_go_to_the_multilingual_model_in_every_format(client, coffee) -> None:
    # No model named: the default (tiny.en) cannot translate; Whisper base can.
    text = client.audio.translations.create(model="", file=_file(coffee, "c.mp3"))
    assert _english(text.text), text.text
    verbose = client.audio.translations.create(
        model="", file=_file(coffee, "c.mp3"), response_format="verbose_json"
    )
    assert verbose.task == "translate" and verbose.language == "en"
    assert verbose.model_extra["model"] == BASE
    assert verbose.model_extra["languages"] == [{"code": "fr"}]
    # With timestamps (faster-whisper's own decoding) the wording may differ a little.
    assert _english(verbose.text) and verbose.segments
    plain = client.audio.translations.create(
        model=BASE, file=_file(coffee, "c.mp3"), response_format="text"
    )
    assert plain.strip() == text.text
    subtitles = client.audio.translations.create(
        model=BASE, file=_file(coffee, "c.mp3"), response_format="srt"
    )
    cues = list(srt.parse(subtitles))
    assert cues and _english(" ".join(c.content for c in cues))
    captions = client.audio.translations.create(
        model=BASE, file=_file(coffee, "c.mp3"), response_format="vtt"
    )
    parsed = webvtt.from_string(captions, strict=True).captions
    assert parsed and _english(" ".join(c.text for c in parsed))


def test_a_named_model_that_cannot_translate_is_a_400(client, coffee) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.translations.create(model=WHISPER, file=_file(coffee, "c.mp3"))
    assert err.value.param == "model" and "cannot translate" in err.value.message


# Live sessions in French -------------------------------------------------------------------


@pytest.fixture(scope="module")
def french() -> Speech:
    return speech_with_pauses(FRENCH, pause_s=1.0, voice=VOICES["fr"])


def _session(language: str | None) -> dict[str, Any]:
    transcription: dict[str, Any] = {"model": BASE}
    if language:
        transcription["language"] = language
    return {"type": "transcription", "audio": {"input": {"transcription": transcription}}}


def _in_french(texts: list[str]) -> None:
    """Each utterance's text holds most of its French sentence's words (Whisper base on
    espeak's French mishears a word or two; the English model keeps few of them)."""
    assert len(texts) == len(FRENCH), texts
    for sentence, text in zip(FRENCH, texts, strict=True):
        assert _overlap(sentence, text) >= 0.6, (sentence, text)


def _partials_in_french(partials: list[str], finals: list[str]) -> None:
    """Partial text, where the replica had time for it, is French: words of the sentences
    or of the French finals (the model may hear "Bonjour" as "Où ?" there too). A partial
    is shed when it would be stale before it ran: Whisper base on a busy 2-core CPU can miss
    them all, so that they come at all is the Fun-ASR-Nano door's test."""
    words = [w for p in partials for w in normalize(p)]
    french = set(normalize(" ".join([*FRENCH, *finals])))
    assert sum(w in french for w in words) >= 0.6 * len(words), (partials, finals)


@pytest.mark.anyio
@pytest.mark.parametrize("language", ["fr", None], ids=["set", "detected"])
async def test_a_french_realtime_session(base_url, french, language) -> None:
    """Through the openai SDK's realtime client: partials and finals in French, the
    language named by the session or detected per utterance."""
    events = await stream_with_sdk(
        client_for(base_url),
        BASE,
        pcm16(french.audio, 24_000),
        chunk_ms=100,
        speed=1.0,
        session=_session(language),
    )
    finals = [e for e in events if e.type == COMPLETED]
    _in_french([e.transcript for e in finals])
    expected = None if language else [{"code": "fr"}]
    partials = []
    for final in finals:
        # The final may revise what the partials said (then it replaces their deltas).
        item = [e for e in events if getattr(e, "item_id", None) == final.item_id]
        committed = [e.type for e in item].index("input_audio_buffer.committed")
        partials += [e.delta for e in item[:committed] if e.type == DELTA]
        assert (final.languages and [lang.model_dump() for lang in final.languages]) == expected
    _partials_in_french(partials, [e.transcript for e in finals])


def _door(base_url: str, path: str) -> str:
    return f"{base_url.replace('http://', 'ws://', 1)}{path}?model={BASE}"


@pytest.mark.anyio
async def test_funasr_runtime_svs_lang(base_url, french) -> None:
    messages = await runtime_session(
        _door(base_url, "/v1/funasr/ws"), pcm16(french.audio, 16_000), speed=1, svs_lang="fr"
    )
    finals = [m["text"] for m in runtime_results(messages, "2pass-offline")]
    _in_french(finals)
    _partials_in_french([m["text"] for m in runtime_results(messages, "2pass-online")], finals)


@pytest.mark.anyio
async def test_fun_asr_realtime_language(base_url, french) -> None:
    results = await realtime_session(
        _door(base_url, "/v1/funasr/realtime"), pcm16(french.audio, 16_000), speed=1, language="fr"
    )
    finals = [s["text"] for s in results[-1]["sentences"]]
    _in_french(finals)
    # Every partial hypothesis goes out here (replace, not append): some while speech went on.
    partials = [r["partial"] for r in results if r["partial"]]
    assert partials
    _partials_in_french(partials, finals)


def test_french_audio_is_really_french_to_the_english_model(client, wavs) -> None:
    """The English-only default does not understand it: the French words come from base."""
    text = client.audio.transcriptions.create(model=WHISPER, file=_file(wavs["fr"])).text
    assert _overlap(PHRASES["fr"], text) < 0.6, text
