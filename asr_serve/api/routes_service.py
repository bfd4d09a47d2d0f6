"""The service itself: its models (``/v1/models``), liveness, readiness and the page."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime.

from fastapi import APIRouter, Depends
from starlette.responses import HTMLResponse, JSONResponse

from asr_serve.api.auth import authenticated
from asr_serve.api.protocol import HealthResponse, ModelCard, ModelList
from asr_serve.api.state import State
from asr_serve.errors import ModelNotFoundError
from asr_serve.web import index_html

#: Behind the API key (when keys are configured).
keyed = APIRouter(dependencies=[Depends(authenticated)])
#: Liveness, readiness and the page: open.
public = APIRouter()


@keyed.get("/v1/models")
async def list_models(ingress: State) -> ModelList:
    return ModelList(data=[ModelCard.of(m) for m in ingress.config.models])


@keyed.get("/v1/models/{name}")
async def get_model(name: str, ingress: State) -> ModelCard:
    if name not in {m.name for m in ingress.config.models}:
        raise ModelNotFoundError(f"model {name!r} does not exist", param="model")
    return ModelCard.of(ingress.config.model(name))


@public.get("/", include_in_schema=False)
async def page() -> HTMLResponse:
    """A static page that tries the API from a browser; it calls only the public API."""
    return HTMLResponse(index_html())


@public.get("/health")
async def health() -> HealthResponse:
    """Liveness: the ingress answers. Does not wait for models."""
    return HealthResponse(status="ok")


@public.get("/ready")
async def ready(ingress: State) -> JSONResponse:
    """Readiness: every model has a loaded, warmed-up replica (503 until then)."""
    models = await ingress.ready()
    ok = all(models.values())
    body = HealthResponse(status="ok" if ok else "not_ready", models=models)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
