"""The page at ``GET /`` in a real headless Chromium against the served graph.

Playwright drives Debian's ``chromium`` (no browser download); the page is opened under
the application's route prefix, as a deployment behind a path would serve it. Live mode
runs through Serve too (the page's microphone to ``/v1/realtime`` under that prefix, with
a fake microphone that plays espeak speech); how its text grows, a refused microphone and a
refused session are checked against the page and the door served by uvicorn in process,
over a fake model and over Whisper.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from asr_serve.api.protocol import ModelCard, ModelList
from asr_serve.engines.base import TranscribeOptions
from asr_serve.web import index_html
from devtools.conversation import LINES, VOICES, converse
from devtools.languages import COFFEE, speak
from devtools.speech import encode, synthesize
from devtools.text import SENTENCES, normalize, wer
from tests.e2e.serving import SPEAKERS_ON, WHISPER, deploy, undeploy, whisper_model
from tests.live.conftest import FakeTranscriber
from tests.live.server import LiveServer, whisper_engine

pytestmark = pytest.mark.e2e

APP = "web"
ANN, BOB = VOICES[0], VOICES[1]
BASE = "whisper-base"
BASE_MODEL = whisper_model(
    name=BASE, model="embedded-multilingual", cpu_threads=1, description="Whisper base"
)
#: docs/api.md's screenshot, refreshed only when asked (``ASR_SERVE_SCREENSHOT=1``): every run
#: shows another port and timing, and a test run should not leave the tree changed.
SCREENSHOT = Path(__file__).parents[2] / "docs" / "web-page.png"
LIVE_SCREENSHOT = SCREENSHOT.with_name("web-page-live.png")
CHROMIUM = "/usr/bin/chromium"
#: Headless on a closed network: without the background-networking flags Chromium's own
#: connections (updates, sync) are refused and slow everything down.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def page_url(serve_url: str) -> Iterator[str]:
    models = [whisper_model(cpu_threads=1), BASE_MODEL]
    prefix = deploy(APP, {"models": models, "speakers": SPEAKERS_ON})
    yield f"{serve_url}{prefix}"
    undeploy(APP)


#: A fake microphone, granted without a prompt (it beeps unless given a file to play).
FAKE_MIC = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


def _launch(pw: Playwright, *args: str) -> Browser:
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + list(args))


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = _launch(playwright, *FAKE_MIC)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser, page_url: str) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 900, "height": 720})
    page.goto(page_url)  # no trailing slash: the page must still find the API under it
    expect(page.locator("#model option")).to_have_text([WHISPER, BASE])
    yield page
    page.close()


def _upload(page: Page, name: str, data: bytes) -> None:
    page.set_input_files("#file", files=[{"name": name, "mimeType": "audio/wav", "buffer": data}])
    page.click("#transcribe")


def test_upload_shows_transcript_segments_and_curl(
    page: Page, page_url: str, tmp_path: Path
) -> None:
    _upload(page, "hello.wav", encode(synthesize("hello world"), 16000, "wav"))
    expect(page.locator("#result")).to_be_visible(timeout=60_000)
    assert normalize(page.inner_text("#transcript")) == ["hello", "world"]
    assert page.is_hidden("th.speaker")  # speakers only when asked

    first_row = page.locator("#segments tr").first.locator("td")
    start, end, text = first_row.all_inner_texts()
    assert re.fullmatch(r"\d\d:\d\d\.\d\d", start) and re.fullmatch(r"\d\d:\d\d\.\d\d", end)
    assert start < end and normalize(text) == ["hello", "world"]

    # Where the server's time went, from the response's Server-Timing.
    stages = dict(re.findall(r"(\w+) (\d+) ms", page.inner_text("#timing")))
    assert list(stages) == [
        "upload",
        "read",
        "queue",
        "batch",
        "engine",
        "transport",
        "render",
        "total",
    ]
    assert int(stages["engine"]) > 0 and int(stages["total"]) >= int(stages["engine"])

    curl = page.inner_text("#curl")
    assert curl.startswith(f"curl -s '{page_url}/v1/audio/transcriptions'")
    for field in ("file=@hello.wav", f"model={WHISPER}", "response_format=verbose_json"):
        assert f"-F '{field}'" in curl
    assert page.is_hidden("#error")
    shot = SCREENSHOT if os.environ.get("ASR_SERVE_SCREENSHOT") else tmp_path / "page.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 10_000


def test_who_spoke_shows_each_segments_speaker(page: Page) -> None:
    """ "Who spoke" asks for ``diarized_json`` (with the chunking OpenAI requires past 30 s):
    the table gets a speaker column, the two voices two letters."""
    talk = converse([((ANN, BOB)[i % 2], LINES[i]) for i in range(4)])
    page.check("#speakers")
    _upload(page, "talk.wav", encode(talk.audio, 16000, "wav"))
    expect(page.locator("#result")).to_be_visible(timeout=90_000)
    expect(page.locator("th.speaker")).to_be_visible()
    speakers = page.locator("#segments td.speaker").all_inner_texts()
    assert speakers[0] == "A" and set(speakers) == {"A", "B"}, speakers
    expect(page.locator("#language-line")).to_have_text("Language: en (detected)")
    curl = page.inner_text("#curl")
    for field in ("response_format=diarized_json", "chunking_strategy=auto"):
        assert f"-F '{field}'" in curl
    assert page.is_hidden("#error")


def test_the_detected_language_is_shown_and_a_translation_is_english(page: Page) -> None:
    expect(page.locator(f"#model option[value='{BASE}']")).to_have_attribute(
        "title", "Whisper base"
    )
    page.select_option("#model", BASE)
    wav = encode(speak("fr", COFFEE["fr"]), 16000, "wav")
    _upload(page, "cafe.wav", wav)
    expect(page.locator("#language-line")).to_have_text("Language: fr (detected)", timeout=60_000)
    assert "café" in normalize(page.inner_text("#transcript"))
    page.check("#translate")
    page.fill("#language", "fr")  # translations take none: the page leaves it out
    page.click("#transcribe")
    expect(page.locator("#language-line")).to_have_text(
        "Language: en (translated from fr)", timeout=60_000
    )
    assert "coffee" in normalize(page.inner_text("#transcript"))
    curl = page.inner_text("#curl")
    assert "/v1/audio/translations'" in curl and "language=" not in curl


def test_api_error_is_shown(page: Page) -> None:
    _upload(page, "notes.wav", b"these are not audio samples" * 40)
    expect(page.locator("#error")).to_contain_text("400 invalid_audio: Could not decode")
    assert page.is_hidden("#result")


def test_microphone_recording_is_sent_as_webm(page: Page) -> None:
    page.click("#record")
    expect(page.locator("#record")).to_have_text("■ Stop")
    page.wait_for_timeout(1500)
    page.click("#record")
    expect(page.locator("#status")).to_have_text("recorded; ready to transcribe")
    page.click("#transcribe")
    expect(page.locator("#result")).to_be_visible(timeout=60_000)
    assert page.is_hidden("#error")
    assert "file=@recording.webm" in page.inner_text("#curl")


# Live mode -----------------------------------------------------------------------------------

LIVE_SENTENCE = SENTENCES[0]


@pytest.fixture(scope="module")
def live_speech(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A WAV the fake microphone plays (over and over), and what Whisper says for it."""
    silence = np.zeros(24_000, dtype=np.float32)  # 1.5 s: the VAD ends the utterance
    audio = np.concatenate([synthesize(LIVE_SENTENCE), silence])
    path = tmp_path_factory.mktemp("mic") / "speech.wav"
    path.write_bytes(encode(audio, 48_000, "wav"))
    reference = whisper_engine().transcribe([audio], [TranscribeOptions()])[0].text
    return path, reference


def _serve_page(**doors: Any) -> LiveServer:
    """The page, a model list and the live doors (over ``doors``: an engine or a
    transcriber); the list has one model the doors do not serve, so the page can be refused."""
    config = whisper_engine().config
    cards = ModelList(
        data=[ModelCard.of(config), ModelCard.of(config.model_copy(update={"name": "unserved"}))]
    )

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(index_html())

    async def models(request: Request) -> JSONResponse:
        return JSONResponse(cards.model_dump())

    return LiveServer(routes=[Route("/", page), Route("/v1/models", models)], **doors)


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    with _serve_page(engine=whisper_engine()) as server:
        yield server.url("/", scheme="http")


@pytest.fixture(scope="module")
def fake_live_url() -> Iterator[str]:
    """As ``live_url``, over a model that answers at once with a word per 0.5 s of audio."""
    with _serve_page(transcriber=FakeTranscriber()) as server:
        yield server.url("/", scheme="http")


@pytest.fixture
def speaking_browser(playwright: Playwright, live_speech: tuple[Path, str]) -> Iterator[Browser]:
    """A browser whose microphone says the sentence, over and over."""
    browser = _launch(playwright, *FAKE_MIC, f"--use-file-for-fake-audio-capture={live_speech[0]}")
    yield browser
    browser.close()


#: Keeps every text the first utterance shows before it is final, in ``window.growing``.
_RECORD_GROWING_TEXT = """() => {
  window.growing = [];
  new MutationObserver(() => {
    const first = document.querySelector("#live-transcript p");
    if (first && !first.classList.contains("final") && first.textContent)
      window.growing.push(first.textContent);
  }).observe(document.getElementById("live-transcript"),
             {subtree: true, childList: true, characterData: true});
}"""


def _live_page(browser: Browser, url: str) -> Page:
    page = browser.new_page()
    page.goto(url)
    expect(page.locator("#model option")).to_have_count(2)
    return page


def test_live_mode_shows_what_was_said(
    speaking_browser: Browser, page_url: str, live_speech: tuple[Path, str], tmp_path: Path
) -> None:
    """Through Serve: the page under its route prefix, the microphone to /v1/realtime."""
    page = speaking_browser.new_page(viewport={"width": 900, "height": 720})
    page.goto(page_url)
    expect(page.locator("#model option")).to_have_text([WHISPER, BASE])
    page.click("#live")
    expect(page.locator("#live")).to_have_text("■ Stop live")
    expect(page.locator("#speaking")).to_be_visible(timeout=30_000)
    final = page.locator("#live-transcript p.final").first
    expect(final).to_be_visible(timeout=60_000)
    reference = live_speech[1]
    assert wer([reference], [final.inner_text()]) <= 0.1, (reference, final.inner_text())
    # The session named no language: the one the model found is shown beside the text.
    assert final.get_attribute("data-language") == "en"
    live = os.environ.get("ASR_SERVE_SCREENSHOT")
    shot = LIVE_SCREENSHOT if live else tmp_path / "live.png"
    page.screenshot(path=shot, full_page=True)
    page.click("#live")
    expect(page.locator("#live-status")).to_have_text("stopped", timeout=15_000)
    expect(page.locator("#live")).to_have_text("◉ Live")
    assert page.is_hidden("#error")


@pytest.fixture
def conversing_browser(playwright: Playwright, tmp_path: Path) -> Iterator[Browser]:
    """A browser whose microphone has two voices taking turns, over and over.

    The fake microphone plays the file from the moment the page opens it, and the page
    sends audio only once the session has started (its WebSocket, ``session.created``,
    the audio worklet): the file leads with 3 s of silence so that on a loaded machine the
    first voice's first turn is not cut short, which leaves a weak speaker to match. Each
    line's longest inner pause is at most 310 ms, well under the live VAD's 500 ms: a line
    with a pause near it ("Yes. The numbers...", 530 ms) is one utterance or two depending
    on where the session's first audio frame fell."""
    talk = converse([(ANN, LINES[0]), (BOB, LINES[4])], pause_s=1.5, lead_s=3.0)
    path = tmp_path / "talk.wav"
    path.write_bytes(encode(talk.audio, 48_000, "wav"))
    browser = _launch(playwright, *FAKE_MIC, f"--use-file-for-fake-audio-capture={path}")
    yield browser
    browser.close()


def test_live_mode_shows_who_spoke(conversing_browser: Browser, page_url: str) -> None:
    """Through Serve: "Who spoke" opens the session with ``<model>-diarize``; each utterance
    shows its speaker, the same letter when a voice comes back."""
    page = conversing_browser.new_page()
    page.goto(page_url)
    expect(page.locator("#model option")).to_have_text([WHISPER, BASE])
    page.select_option("#model", WHISPER)
    page.check("#speakers")
    page.click("#live")
    finals = page.locator("#live-transcript p.final")
    expect(finals).to_have_count(3, timeout=120_000)
    texts = finals.locator(".text").all_inner_texts()
    assert finals.locator(".speaker").all_inner_texts() == ["A", "B", "A"], texts
    assert all(texts)
    page.click("#live")
    expect(page.locator("#live-status")).to_have_text("stopped", timeout=15_000)
    assert page.is_hidden("#error")


def test_live_text_grows_while_speaking_then_the_final_replaces_it(
    speaking_browser: Browser, fake_live_url: str
) -> None:
    page = _live_page(speaking_browser, fake_live_url)
    page.evaluate(_RECORD_GROWING_TEXT)
    page.click("#live")
    final = page.locator("#live-transcript p.final").first
    expect(final).to_be_visible(timeout=30_000)
    text = final.inner_text()
    growing = page.evaluate("window.growing")
    # Deltas appended as they became stable: "w0", "w0 w1", ... each a start of the final.
    assert len(growing) >= 2 and all(text.startswith(g) for g in growing), (growing, text)
    assert growing == sorted(growing, key=len)


def test_a_refused_microphone_is_explained(playwright: Playwright, live_url: str) -> None:
    browser = _launch(playwright, "--use-fake-device-for-media-stream", "--deny-permission-prompts")
    try:
        page = _live_page(browser, live_url)
        page.click("#live")
        expect(page.locator("#error")).to_contain_text("Microphone refused (NotAllowedError)")
        assert page.is_hidden("#live-box")
    finally:
        browser.close()


def test_a_refused_session_shows_what_the_close_code_means(browser: Browser, live_url: str) -> None:
    page = _live_page(browser, live_url)
    page.select_option("#model", "unserved")
    page.click("#live")
    error = page.locator("#error")
    expect(error).to_contain_text("Live session ended: 1008 the server refused the session")
    expect(error).to_contain_text("model_not_found")
    expect(page.locator("#live-status")).to_have_text("ended")
