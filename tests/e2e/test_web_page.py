"""The page at ``GET /`` in a real headless Chromium against the served graph.

Playwright drives Debian's ``chromium`` (no browser download); the page is opened under
the application's route prefix, as a deployment behind a path would serve it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from ray import serve

from asr_serve.testing.speech import encode, synthesize
from asr_serve.testing.text import normalize
from tests.e2e.serving import WHISPER, deploy, whisper_model

pytestmark = pytest.mark.e2e

APP = "web"
#: The README's screenshot, refreshed only when asked (``ASR_SERVE_SCREENSHOT=1``): every run
#: shows another port and timing, and a test run should not leave the tree changed.
README_SCREENSHOT = Path(__file__).parents[2] / "docs" / "web-page.png"
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
    prefix = deploy(APP, {"models": [whisper_model(cpu_threads=1)]})
    yield f"{serve_url}{prefix}"
    serve.delete(APP)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        # A fake microphone (a beep), granted without a prompt, for the recording test.
        fake_mic = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + fake_mic)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, page_url: str) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 900, "height": 720})
    page.goto(page_url)  # no trailing slash: the page must still find the API under it
    expect(page.locator("#model option")).to_have_text([WHISPER])
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

    first_row = page.locator("#segments tr").first.locator("td")
    start, end, text = first_row.all_inner_texts()
    assert re.fullmatch(r"\d\d:\d\d\.\d\d", start) and re.fullmatch(r"\d\d:\d\d\.\d\d", end)
    assert start < end and normalize(text) == ["hello", "world"]

    curl = page.inner_text("#curl")
    assert curl.startswith(f"curl -s '{page_url}/v1/audio/transcriptions'")
    for field in ("file=@hello.wav", f"model={WHISPER}", "response_format=verbose_json"):
        assert f"-F '{field}'" in curl
    assert page.is_hidden("#error")
    shot = README_SCREENSHOT if os.environ.get("ASR_SERVE_SCREENSHOT") else tmp_path / "page.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 10_000


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
