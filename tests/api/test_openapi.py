"""``/openapi.json`` (and so ``/docs``) shows the form of each audio route, though the routes
parse their multipart bodies themselves."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from asr_serve.api.asgi import INGRESS_ROUTERS, build_api
from asr_serve.api.auth import APIKeyVerifier
from asr_serve.config import CorsConfig
from asr_serve.serving.requests import TranscriptionRequest, TranslationRequest

#: OpenAI's ``audio.transcriptions.create`` form, as its client sends it, and this server's
#: ``languages[]``, ``keywords[]`` and ``num_speakers``.
TRANSCRIPTION_FIELDS = {
    "file",
    "model",
    "language",
    "languages[]",
    "prompt",
    "keywords[]",
    "response_format",
    "temperature",
    "timestamp_granularities[]",
    "include[]",
    "chunking_strategy",
    "known_speaker_names[]",
    "known_speaker_references[]",
    "num_speakers",
    "stream",
}
#: OpenAI's ``audio.translations.create`` form.
TRANSLATION_FIELDS = {"file", "model", "prompt", "response_format", "temperature"}


def form(document: dict[str, Any], path: str) -> dict[str, Any]:
    """The ``multipart/form-data`` schema of ``POST path`` in an OpenAPI document."""
    body = document["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    return body["content"]["multipart/form-data"]["schema"]


def _document() -> dict[str, Any]:
    async def nothing() -> None:
        return None

    app = build_api(
        INGRESS_ROUTERS,
        state=None,
        api_keys=APIKeyVerifier([]),
        cors=CorsConfig(),
        on_shutdown=nothing,
    )
    return TestClient(app).get("/openapi.json").json()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if "$ref" in node else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for item in node for r in _refs(item)]
    return []


def test_every_transcription_and_translation_field_is_shown() -> None:
    document = _document()
    transcription = form(document, "/v1/audio/transcriptions")
    translation = form(document, "/v1/audio/translations")
    assert set(transcription["properties"]) == TRANSCRIPTION_FIELDS
    assert set(translation["properties"]) == TRANSLATION_FIELDS
    for schema in (transcription, translation):
        assert schema["required"] == ["file"]
        assert schema["properties"]["file"] == {
            "type": "string",
            "format": "binary",
            "description": "The audio file.",
        }


def test_the_schema_is_the_one_the_requests_are_validated_with() -> None:
    """A field added to a request model shows in the docs without another edit."""
    document = _document()
    for path, model in [
        ("/v1/audio/transcriptions", TranscriptionRequest),
        ("/v1/audio/translations", TranslationRequest),
    ]:
        shown = {name.removesuffix("[]") for name in form(document, path)["properties"]}
        assert shown == {"file", *model.model_fields}


def test_values_and_nested_objects_are_spelled_out() -> None:
    document = _document()
    fields = form(document, "/v1/audio/transcriptions")["properties"]
    assert fields["timestamp_granularities[]"]["items"]["enum"] == ["segment", "word"]
    assert fields["temperature"]["minimum"] == 0.0 and fields["temperature"]["maximum"] == 1.0
    server_vad = next(o for o in fields["chunking_strategy"]["anyOf"] if o.get("type") == "object")
    assert set(server_vad["properties"]) == {
        "type",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
    }
    # Every reference resolves within the document (nested models are written in place).
    for ref in _refs(document):
        name = ref.removeprefix("#/components/schemas/")
        assert ref.startswith("#/components/schemas/") and name in document["components"]["schemas"]
