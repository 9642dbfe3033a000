"""create_app(settings) -> FastAPI: the routes, wired to one Service.

Routes: POST /v1/deidentify, POST /v1/jobs, GET /v1/jobs/{id}, GET /v1/jobs, POST / (Eventarc),
POST /v1/pubsub, GET /v1/review, POST /v1/review/{id}/release|reject, GET / (dashboard),
POST /login, POST /logout, GET /v1/policies, /healthz, /readyz, /metrics.

Every route but /healthz and /readyz needs a bearer token (or the dashboard's cookie).
Error answers are JSON {"error": ...} with messages written here, never an echo of the
request (FastAPI's own validation answer quotes the input: it is replaced).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from phiscrub.keys import KeyRing, load_key
from phiscrub.service import dashboard, events, review
from phiscrub.service.auth import COOKIE, TokenAuth, check_csrf, csrf_value
from phiscrub.service.bodies import read_capped
from phiscrub.service.core import Service
from phiscrub.service.jobs import JobManager
from phiscrub.service.logs import log
from phiscrub.service.settings import Settings
from phiscrub.service.uploads import deidentify_upload

_SMALL = 64 << 10


def create_app(settings: Settings, keys: KeyRing | None = None) -> FastAPI:
    svc = Service(settings, keys or load_key(settings.key_file))
    auth = TokenAuth(settings.tokens, settings.auth)
    jobs = JobManager(svc)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        jobs.stop(timeout=20)
        svc.close()

    app = FastAPI(title="phiscrub", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url="/v1/openapi.json")
    app.state.service = svc
    app.state.jobs = jobs

    def principal(request: Request) -> str:
        return auth.principal(request)

    # -- errors -------------------------------------------------------------------------------
    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        return JSONResponse({"error": detail}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        fields = sorted({".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()})
        return JSONResponse({"error": "invalid request", "fields": fields}, status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, exc: Exception) -> Response:
        log(logging.ERROR, "internal error", error_type=type(exc).__name__)
        return JSONResponse({"error": "internal error"}, status_code=500)

    # -- health, metrics ----------------------------------------------------------------------
    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Response:
        problems = svc.policies.check()
        try:
            svc.store.item_counts()
        except Exception as e:  # noqa: BLE001
            problems.append(f"state database unavailable ({type(e).__name__})")
        if settings.auth and not settings.tokens:
            problems.append("auth is on but no token is configured")
        body = {"status": "ready" if not problems else "not ready", "problems": problems}
        return JSONResponse(body, status_code=200 if not problems else 503)

    @app.get("/metrics")
    def metrics(_who: str = Depends(principal)) -> Response:
        return Response(svc.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/policies")
    def policies(_who: str = Depends(principal)) -> dict:
        return {"policies": svc.policies.names()}

    # -- uploads and jobs -----------------------------------------------------------------------
    @app.post("/v1/deidentify")
    async def deidentify(request: Request, policy: str = "default", _who: str = Depends(principal)) -> Response:
        return await deidentify_upload(svc, request, policy)

    @app.post("/v1/jobs", status_code=202)
    async def start_job(request: Request, who: str = Depends(principal)) -> Response:
        doc = events._json(await read_capped(request, _SMALL), "job request")
        workers = doc.get("workers", settings.job_workers)
        if not isinstance(workers, int) or isinstance(workers, bool):
            raise HTTPException(400, "workers must be an integer")
        policy = doc.get("policy", "default")
        if not isinstance(policy, str):
            raise HTTPException(400, "policy must be a name")
        job_id = jobs.start(doc.get("src"), doc.get("dst"), policy, workers, who)  # type: ignore[arg-type]
        return JSONResponse(jobs.operation(job_id), status_code=202, headers={"Location": f"/v1/jobs/{job_id}"})

    @app.get("/v1/jobs/{job_id}")
    def get_job(job_id: str, _who: str = Depends(principal)) -> dict:
        return jobs.operation(job_id)

    @app.get("/v1/jobs")
    def list_jobs(_who: str = Depends(principal)) -> dict:
        from phiscrub.service.jobs import operation

        return {"operations": [operation(r) for r in svc.store.jobs(100)]}

    # -- bucket events --------------------------------------------------------------------------
    @app.post("/")
    async def eventarc(request: Request, _who: str = Depends(principal)) -> Response:
        body = await read_capped(request, settings.max_event_bytes)
        code, out = await events.handle(svc, events.parse_eventarc(request.headers, body), "eventarc")
        return JSONResponse(out, status_code=code)

    @app.post("/v1/pubsub")
    async def pubsub(request: Request, _who: str = Depends(principal)) -> Response:
        body = await read_capped(request, settings.max_event_bytes)
        code, out = await events.handle(svc, events.parse_pubsub(body), "pubsub")
        return JSONResponse(out, status_code=code)

    # -- review queue ---------------------------------------------------------------------------
    @app.get("/v1/review")
    def review_list(status: str = "pending", _who: str = Depends(principal)) -> dict:
        return {"items": review.listing(svc, None if status == "all" else status)}

    async def _decision(request: Request, item_id: str, what: str, who: str) -> Response:
        form = request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        if form:
            fields = parse_qs((await read_capped(request, 4096)).decode("utf-8", "replace"))
            check_csrf(auth, request, (fields.get("csrf") or [""])[0])
        elif auth.presented(request)[1] == "cookie":
            raise HTTPException(403, "a browser decision must come from the dashboard's form")
        if what == "release":
            out = await review.release(svc, item_id, who)
        else:
            out = review.reject(svc, item_id, who)
        return RedirectResponse("/", status_code=303) if form else JSONResponse(out)

    @app.post("/v1/review/{item_id}/release")
    async def release(request: Request, item_id: str, who: str = Depends(principal)) -> Response:
        return await _decision(request, item_id, "release", who)

    @app.post("/v1/review/{item_id}/reject")
    async def reject(request: Request, item_id: str, who: str = Depends(principal)) -> Response:
        return await _decision(request, item_id, "reject", who)

    # -- dashboard ------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request) -> Response:
        token, _ = auth.presented(request)
        if settings.auth and not auth.valid(token):
            return _html(dashboard.login_page(), 401)
        return _html(dashboard.render(svc, csrf_value(token or "")), 200)

    @app.post("/login")
    async def login(request: Request) -> Response:
        fields = parse_qs((await read_capped(request, 4096)).decode("utf-8", "replace"))
        token = (fields.get("token") or [""])[0].strip()
        if not auth.valid(token):
            svc.audit("dashboard-login", outcome="refused")
            return _html(dashboard.login_page("that token is not valid"), 401)
        resp = RedirectResponse("/", status_code=303)
        secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure, max_age=8 * 3600)
        return resp

    @app.post("/logout")
    def logout() -> Response:
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    from phiscrub.service.middleware import RequestLog

    app.add_middleware(RequestLog, metrics=svc.metrics, project=settings.project)
    return app


def _html(text: str, status: int) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers={"Content-Security-Policy": dashboard.CSP,
                                                            "X-Content-Type-Options": "nosniff",
                                                            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


def _version() -> str:
    from phiscrub import __version__

    return __version__
