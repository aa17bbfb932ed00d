"""The HTTP API of `plmkit serve`: FastAPI routes over the loaded models, errors as JSON, a page to try them.

    POST /v1/classify  {"texts": [...], "pairs": [...]?, "model": NAME?}   -> labels and probabilities
    POST /v1/embed     {"texts": [...], "model": NAME?}                    -> sentence vectors
    POST /v1/similar   {"texts": [...], "k": 5, "model": NAME?}            -> nearest indexed sentences
    POST /v1/generate  {"texts": [...], "stream": false, decoding options} -> generated text (server-sent events
                                                                             when streamed)
    GET  /v1/models, /healthz, / (a page to try each route), /docs and /openapi.json (OpenAPI)

Statuses: 400 a body that is not JSON; 413 a body, text or item count over the limits; 422 a request that is
JSON but not a valid one (the message names the field); 404 a route no loaded model offers; 503 overloaded, timed
out or shutting down. A model's own failure is a 500 with no traceback in it (the traceback goes to the log).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

try:
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException
except ImportError as e:  # the serve extra is not installed
    raise ImportError(f"plmkit serve needs the serve extra (pip install 'plmkit[serve]'): {e}") from None

from .batching import Batcher, Overloaded, TimedOut
from .config import ServeConfig
from .models import GENERATE_OPTIONS, ServedModel

logger = logging.getLogger("plmkit.serve")
ROUTES = ("classify", "embed", "similar", "generate")


class ApiError(Exception):
    """An error answered as {"error": {"status", "type", "message"}} with its HTTP status."""

    def __init__(self, status: int, message: str, type: str = "invalid_request") -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type


# ---- request bodies (unknown fields are refused: a misspelt option never passes silently) ------------------

class _Texts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str] = Field(description="the inputs, at most max_items, each at most max_text_chars characters")
    model: str | None = Field(None, description="a served model's name; optional when one model offers the route")


class ClassifyRequest(_Texts):
    pairs: list[str] | None = Field(None, description="second texts of text-pair tasks, one per text")


class EmbedRequest(_Texts):
    pass


class SimilarRequest(_Texts):
    k: int = Field(5, ge=1, le=1000, description="nearest sentences per text")


class GenerateRequest(_Texts):
    stream: bool = Field(False, description="server-sent events as the text grows (one text; greedy or sampling)")
    num_beams: int | None = Field(None, ge=1, le=16, description="default: as the directory was trained")
    do_sample: bool | None = None
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, description="sampling seed (a seeded request is decoded alone)")


# ---- the application --------------------------------------------------------------------------------------

def _error(status: int, message: str, type: str) -> JSONResponse:
    return JSONResponse({"error": {"status": status, "type": type, "message": message}}, status_code=status)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is answered 413 before any route reads it."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = _error(413, f"request body over {self.limit} bytes (max_body_bytes)", "body_too_large")
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await too_large(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:  # read the whole (bounded) body, then replay it to the route
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await too_large(scope, receive, send)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()  # the disconnect, for streaming responses
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, replay, send)


def build_app(models: list[ServedModel], cfg: ServeConfig) -> FastAPI:
    """The FastAPI application answering for `models` (already loaded) under `cfg`'s limits."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plmkit-infer")  # one forward at a time
    batchers = {(m.name, route): Batcher(run, executor=executor, max_batch_size=cfg.max_batch_size,
                                         max_wait_s=cfg.max_wait_ms / 1000, max_queue=cfg.max_queue)
                for m in models for route, run in m.routes.items()}
    by_name = {m.name: m for m in models}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        for b in batchers.values():
            b.start()
        yield  # uvicorn lets in-flight requests finish (graceful_timeout) before this returns
        for b in batchers.values():
            await b.stop()
        executor.shutdown(wait=True)

    app = FastAPI(title="plmkit serve", version="1", lifespan=lifespan,
                  description="Model directories written or read by plmkit, behind one API with dynamic batching.")
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.message, e.type)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = e.errors()
        if request.method == "POST" and "json" not in request.headers.get("content-type", ""):
            return _error(400, "send the body as JSON, with Content-Type: application/json", "invalid_json")
        if any(err.get("type") == "json_invalid" for err in errors):
            return _error(400, "the request body is not valid JSON", "invalid_json")
        text = "; ".join(f"{'.'.join(str(x) for x in err.get('loc', ()))}: {err.get('msg')}" for err in errors)
        return _error(422, text, "invalid_request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        return _error(e.status_code, str(e.detail), "http_error")

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> JSONResponse:
        logger.error("%s %s failed", request.method, request.url.path, exc_info=e)
        return _error(500, f"the model failed on this request ({type(e).__name__}); the server log has the details",
                      "internal_error")

    def choose(route: str, name: str | None) -> ServedModel:
        offering = [m for m in models if route in m.routes]
        if name is not None:
            if name in by_name and route in by_name[name].routes:
                return by_name[name]
            why = "no model is named so" if name not in by_name else f"it is a {by_name[name].kind} model"
            raise ApiError(422, f"model {name!r} cannot {route} ({why}); models that can: "
                           f"{', '.join(m.name for m in offering) or 'none'}")
        if not offering:
            raise ApiError(404, f"no loaded model offers /v1/{route}", "no_such_route")
        if len(offering) > 1:
            raise ApiError(422, f"several models can {route} ({', '.join(m.name for m in offering)}): name one in "
                           "the request's \"model\" field")
        return offering[0]

    def check_texts(texts: list[str]) -> None:
        if not texts:
            raise ApiError(422, "texts: give at least one text")
        if len(texts) > cfg.max_items:
            raise ApiError(413, f"texts: {len(texts)} items, more than max_items {cfg.max_items}", "too_many_items")
        for i, t in enumerate(texts):
            if len(t) > cfg.max_text_chars:
                raise ApiError(413, f"texts.{i}: {len(t)} characters, more than max_text_chars "
                               f"{cfg.max_text_chars}", "text_too_long")

    async def run(model: ServedModel, route: str, items: list) -> list:
        try:
            return await batchers[model.name, route].submit(items, cfg.request_timeout)
        except (Overloaded, TimedOut) as e:
            raise ApiError(503, str(e), "unavailable") from None
        except ValueError as e:  # the model refused the input or the options
            raise ApiError(422, str(e)) from None

    @app.post("/v1/classify", summary="labels and probabilities (plmkit finetune / pet / ptune directories)")
    async def classify(req: ClassifyRequest) -> dict:
        model = choose("classify", req.model)
        check_texts(req.texts)
        if req.pairs is not None:
            if len(req.pairs) != len(req.texts):
                raise ApiError(422, f"pairs: {len(req.pairs)} items for {len(req.texts)} texts")
            check_texts(req.pairs)
        items = list(zip(req.texts, req.pairs or [None] * len(req.texts)))
        return {"model": model.name, "results": await run(model, "classify", items)}

    @app.post("/v1/embed", summary="sentence vectors (any encoder; an index's encoder with its whitening)")
    async def embed(req: EmbedRequest) -> dict:
        model = choose("embed", req.model)
        check_texts(req.texts)
        vectors = await run(model, "embed", list(req.texts))
        return {"model": model.name, "dim": len(vectors[0]), "vectors": vectors}

    @app.post("/v1/similar", summary="the k nearest sentences of an index built by plmkit similar")
    async def similar(req: SimilarRequest) -> dict:
        model = choose("similar", req.model)
        check_texts(req.texts)
        return {"model": model.name, "results": await run(model, "similar", [(t, req.k) for t in req.texts])}

    @app.post("/v1/generate", summary="generated text (plmkit seq2seq directories); streamed as server-sent events")
    async def generate(req: GenerateRequest):
        model = choose("generate", req.model)
        check_texts(req.texts)
        options = {k: getattr(req, k) for k in GENERATE_OPTIONS if getattr(req, k) is not None}
        if not req.stream:
            items = [(t, tuple(sorted(options.items()))) for t in req.texts]
            return {"model": model.name, "results": await run(model, "generate", items)}
        if len(req.texts) != 1:
            raise ApiError(422, f"stream: one text per streamed request, found {len(req.texts)}")
        if options.get("num_beams", 1) > 1:
            raise ApiError(422, "stream: beam search knows its text only at the end; stream with num_beams 1 "
                           "(greedy or do_sample)")
        return await _stream(model, req.texts[0], options)

    async def _stream(model: ServedModel, text: str, options: dict) -> StreamingResponse:
        loop = asyncio.get_running_loop()
        steps = model.stream(text, options)
        done = object()
        try:  # the first step before the 200: bad options are still a JSON error
            first = await loop.run_in_executor(executor, next, steps, done)
        except ValueError as e:
            raise ApiError(422, str(e)) from None

        def event(kind: str, data: dict) -> str:
            return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"

        async def events():
            sent, now = "", first
            try:
                while now is not done:
                    yield event("token", {"text": now, "delta": now[len(sent):] if now.startswith(sent) else None})
                    sent = now
                    now = await loop.run_in_executor(executor, next, steps, done)
                yield event("done", {"model": model.name, "text": sent})
            except Exception as e:  # noqa: BLE001 - the status line is sent: say it in the stream
                logger.error("streamed generation failed", exc_info=e)
                yield event("error", {"status": 500, "type": "internal_error",
                                      "message": f"generation failed ({type(e).__name__}); see the server log"})
        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/v1/models", summary="the loaded models, their kinds and routes")
    async def list_models() -> dict:
        return {"models": [{"name": m.name, "kind": m.kind, "path": str(m.path),
                            "routes": [f"/v1/{r}" for r in ROUTES if r in m.routes], **m.info} for m in models],
                "limits": {k: getattr(cfg, k) for k in ("max_batch_size", "max_wait_ms", "max_items",
                                                        "max_text_chars", "max_body_bytes", "request_timeout")}}

    @app.get("/healthz", summary="liveness: 200 once the models are loaded")
    async def healthz() -> dict:
        return {"status": "ok", "models": len(models),
                "queued": sum(b.queued() for b in batchers.values()),
                "batches": sum(b.batches for b in batchers.values())}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8"))

    return app


def serve(specs: list[str], cfg: ServeConfig) -> None:
    """Load every --model, then serve them until SIGINT / SIGTERM (in-flight requests finish first)."""
    from .models import load_model, parse_model_specs

    models = []
    for name, path in parse_model_specs(specs):
        m = load_model(name, path, cfg)
        models.append(m)
        logger.info("model %s: %s (%s, %s) -> %s", name, path, m.kind, m.info["runtime"], ", ".join(m.routes))
        if cfg.runtime == "onnx" and m.info["runtime"] == "torch":
            logger.info("model %s keeps the torch runtime: --runtime onnx covers classify for finetune classifiers "
                        "and embed for encoders, not a %s directory", name, m.kind)
    uvicorn.run(build_app(models, cfg), host=cfg.host, port=cfg.port, log_level=cfg.log_level,
                timeout_graceful_shutdown=cfg.graceful_timeout)
