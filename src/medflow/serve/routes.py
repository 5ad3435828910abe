"""The service's endpoints. Every refusal is a JSON error `{error, problems: [{field, problem}]}` with the right
status (400 malformed JSON, 401 missing/unknown/revoked key, 404 unknown model, 413 body too large, 422 a field
at fault, 429 rate limit), documented in the OpenAPI schema; a failure inside prediction is a 500 that still
names the model and request (and is counted), never a bare traceback."""

from __future__ import annotations

import os
import time
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from medflow.errors import MedflowError
from medflow.serve.errors import RequestError
from medflow.serve.service import (
    ERROR_SCHEMA,
    Service,
    audit_row,
    error,
    new_request_id,
    page,
    parse_json,
    predict_payload,
    prometheus,
)

__all__ = ["add_routes"]

bearer = HTTPBearer(auto_error=False, description="an API key from `medflow keys create --name NAME`")


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "malformed JSON", 401: "missing, unknown or revoked API key", 404: "no such model",
            413: "body over the size limit", 422: "a field is missing, unknown or of the wrong type (named)",
            429: "rate limit for this key (see Retry-After)"}
    return {c: {"description": text[c], "content": {"application/json": {"schema": ERROR_SCHEMA}}} for c in codes}


def add_routes(app: FastAPI, service: Service) -> None:
    def authorize(header: str | None) -> str:
        """The key's name for an `Authorization` header value, or a 401 / 429 refusal. A cached key is a dict
        lookup (a miss costs one indexed query), so it runs on the event loop."""
        scheme, _, credentials = (header or "").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            raise RequestError("missing API key: send `Authorization: Bearer KEY` (create one with "
                               "`medflow keys create --name NAME`)", [{"field": "Authorization", "problem": "missing"}],
                               status=401)
        name = service.store.key_name(credentials)
        if name is None:
            raise RequestError("unknown or revoked API key", [{"field": "Authorization", "problem": "not valid"}],
                               status=401)
        ok, wait = service.limiter.allow(name)
        if not ok:
            raise RequestError(f"rate limit for key '{name}' reached; retry in {wait:.1f} s",
                               [{"field": "Authorization", "problem": "rate limited"}], status=429)
        return name

    async def authorized(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> str:
        """The dependency of the endpoints off the hot path (it also documents the bearer scheme in OpenAPI);
        the prediction endpoints call `authorize` themselves (FastAPI's dependency resolution cost a tenth of a
        served prediction)."""
        name = authorize(request.headers.get("authorization"))
        request.state.key = name
        return name

    @app.exception_handler(RequestError)
    async def _refused(request: Request, exc: RequestError) -> JSONResponse:
        parts = request.url.path.strip("/").split("/")
        model = parts[1] if len(parts) > 1 and parts[0] == "models" else ""
        service.metrics.observe(_endpoint(request), model, exc.status, 0.0, str(exc.status))
        headers = {"Retry-After": "1"} if exc.status == 429 else \
            {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error(exc.status, exc.message, exc.problems, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in exc.errors()]
        return error(422, "; ".join(f"{p['field']}: {p['problem']}" for p in problems), problems)

    for name in list(service.models):  # first: routes are matched in order, and predictions are the traffic
        _model_routes(app, service, name, authorized, authorize)
        _cds_route(app, service, name, authorize)

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        """Liveness: no key needed; `worker` is the answering process (several with `--workers`)."""
        return {"status": "ok", "models": {n: s.version for n, s in service.models.items()}, "worker": os.getpid()}

    @app.get("/", include_in_schema=False)
    def index():
        return page()

    @app.get("/models", tags=["models"], responses=_errors(401, 429))
    def models(key: str = Depends(authorized)) -> list[dict[str, Any]]:
        """Each served model: version, task, input schema, training data, metrics with 95% CIs, intended use."""
        return [s.card() for s in service.models.values()]

    @app.get("/metrics", tags=["service"], responses={**_errors(401, 429), 200: {
        "content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus text format"}})
    def metrics(key: str = Depends(authorized)):
        """Requests, latency histogram and errors per model (Prometheus text format)."""
        return prometheus(service)

    @app.get("/cds-services", tags=["CDS Hooks"], responses=_errors(401, 429))
    def cds_discovery(key: str = Depends(authorized)) -> dict[str, Any]:
        """CDS Hooks 2.0 discovery: one `patient-view` service per served model, with its prefetch templates."""
        from medflow.serve.cds import services_document

        return services_document(service.models)

    @app.api_route("/models/{name}", methods=["GET", "POST"], include_in_schema=False)
    @app.api_route("/models/{name}/{action}", methods=["GET", "POST"], include_in_schema=False)
    def unknown(name: str, action: str = "") -> None:
        known = sorted(service.models)
        if name in known:
            raise RequestError(f"model '{name}' has no endpoint '{action}'; it has predict, monitoring, report",
                               [{"field": "path", "problem": "unknown endpoint"}], status=404)
        raise RequestError(f"no model '{name}' is served; served: {known}", [{"field": "name", "problem": "unknown"}],
                           status=404)

    def openapi() -> dict[str, Any]:  # each model's request body from its current version's schema
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for name, served in service.models.items():
                op = spec["paths"].get(f"/models/{name}/predict", {}).get("post")
                if op is not None:
                    op["requestBody"] = {"required": True, "content": {"application/json": {
                        "schema": served.schema.body_json_schema()}}}
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


SECURED = {"security": [{"HTTPBearer": []}]}  # what Depends(bearer) documents, for the routes that check inline


def _model_routes(app: FastAPI, service: Service, name: str, authorized: Any, authorize: Any) -> None:
    def served():
        if name not in service.models:
            raise RequestError(f"no model '{name}' is served", [{"field": "name", "problem": "unknown"}], status=404)
        return service.models[name]

    @app.get(f"/models/{name}", tags=["models"], responses=_errors(401, 429), name=f"card {name}")
    def card(key: str = Depends(authorized)) -> dict[str, Any]:
        """The model card: version, task, metrics with CIs, training data, intended use, input schema."""
        return served().card()

    @app.post(f"/models/{name}/predict", tags=["models"], responses=_errors(400, 401, 413, 422, 429),
              name=f"predict {name}", openapi_extra=SECURED)
    async def predict(request: Request) -> JSONResponse:
        """Predict one or many records: the prediction, the decision at the run's threshold, fields outside the
        training range, and with `explain` the top factors; survival runs add S(t) at the horizons."""
        start = time.perf_counter()
        key = authorize(request.headers.get("authorization"))
        body, s = await request.body(), served()
        if s.batcher is None:  # event data: one patient's record per call
            return await service.call(_predict, service, s, key, body, start)
        payload = parse_json(body)
        # small bodies are validated here (a fraction of a millisecond); large ones off the event loop
        records, explain = s.schema.check(payload) if len(body) < 16_384 else \
            await service.call(s.schema.check, payload)
        return await s.batcher.submit(records, explain, {"request_id": new_request_id(), "key": key, "body": body,
                                                        "start": start})

    @app.get(f"/models/{name}/monitoring", tags=["models"], responses=_errors(401, 429), name=f"monitoring {name}")
    def monitoring(key: str = Depends(authorized)) -> dict[str, Any]:
        """Input drift since the service started against the training data: population stability index per
        feature, share of values outside the training range, unseen categories; flags PSI >= 0.2."""
        return served().monitor.summary()

    @app.get(f"/models/{name}/report", tags=["models"], responses={**_errors(401, 404, 429), 200: {
        "content": {"text/html": {"schema": {"type": "string"}}}, "description": "the run's HTML model card"}},
        name=f"report {name}")
    def report(key: str = Depends(authorized)):
        """The run's HTML report (model card)."""
        path = served().run.path / "report.html"
        if not path.exists():
            raise RequestError(f"model '{name}' has no report.html; write it with `medflow report RUN_DIR`",
                               status=404)
        return FileResponse(path, media_type="text/html")


CDS_REQUEST = {"type": "object", "required": ["hook", "hookInstance", "context", "prefetch"], "properties": {
    "hook": {"type": "string", "enum": ["patient-view"]}, "hookInstance": {"type": "string", "minLength": 1},
    "fhirServer": {"type": "string"}, "context": {"type": "object", "required": ["patientId"], "properties": {
        "patientId": {"type": "string"}, "userId": {"type": "string"}}},
    "prefetch": {"type": "object", "required": ["patient"], "additionalProperties": {
        "anyOf": [{"type": "object", "required": ["resourceType"], "properties": {
            "resourceType": {"type": "string"}}}, {"type": "null"}]},
        "properties": {"patient": {"type": "object", "required": ["resourceType"],
                                   "properties": {"resourceType": {"type": "string"}}}}}}}


def _cds_route(app: FastAPI, service: Service, name: str, authorize: Any) -> None:
    @app.post(f"/cds-services/{name}", tags=["CDS Hooks"], responses=_errors(400, 401, 413, 422, 429),
              name=f"cds {name}", openapi_extra={**SECURED, "requestBody": {"required": True, "content": {
                  "application/json": {"schema": CDS_REQUEST}}}})
    async def hook(request: Request) -> dict[str, Any]:
        """CDS Hooks `patient-view`: FHIR prefetch in, one card out (risk band, top factors, model and version)."""
        from medflow.serve.cds import card, hook_inputs

        start, rid = time.perf_counter(), new_request_id()
        key = authorize(request.headers.get("authorization"))
        if name not in service.models:
            raise RequestError(f"no CDS service '{name}'", status=404)
        s = service.models[name]
        body = await request.body()
        try:
            inputs, notes = hook_inputs(s, parse_json(body))
            results = await service.call(predict_payload, s, inputs, True)
        except MedflowError as e:
            raise RequestError(str(e), [{"field": "prefetch", "problem": str(e)}], status=422) from None
        answer = {"cards": [card(s, results[-1], notes)]}
        latency = time.perf_counter() - start
        await service.call(service.store.audit, [audit_row(
            rid, key, "cds", s, body, answer, latency, service.config.store_inputs, len(results))])
        service.metrics.observe("cds", name, 200, latency)
        return answer


def _predict(service: Service, s: Any, key: str, body: bytes, start: float) -> JSONResponse:
    """Validate, predict, audit (committed before the answer), count: one thread hop per request."""
    rid, name = new_request_id(), s.name
    try:
        inputs, explain = s.schema.validate(parse_json(body))
        results = predict_payload(s, inputs, explain)
    except MedflowError as e:  # e.g. a value the featurizer cannot read: the message names the field
        raise RequestError(str(e), [{"field": "records", "problem": str(e)}], status=422) from None
    except RequestError:
        raise
    except Exception as e:  # noqa: BLE001 - counted, answered with the request id, not a traceback
        service.metrics.observe("predict", name, 500, time.perf_counter() - start, "internal")
        return error(500, f"prediction failed for model '{name}' (request {rid}): {type(e).__name__}: {e}")
    return service.finish(s, [({"request_id": rid, "key": key, "body": body, "start": start}, results)])[0]


def _endpoint(request: Request) -> str:
    parts = request.url.path.strip("/").split("/")
    return parts[-1] if parts and parts[0] == "models" and len(parts) > 2 else (parts[0] or "index")
