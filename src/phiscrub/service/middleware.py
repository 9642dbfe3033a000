"""One access line per request (route template, status, latency; never the raw path or
query), the trace context for every line the request logs, and request counts by route."""

from __future__ import annotations

import logging
import time

from phiscrub.service.logs import log, reset_trace, set_trace, trace_fields
from phiscrub.service.metrics import Metrics


class RequestLog:
    def __init__(self, app, metrics: Metrics, project: str) -> None:
        self.app = app
        self.metrics = metrics
        self.project = project

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = None
        for k, v in scope.get("headers", ()):
            if k == b"x-cloud-trace-context":
                header = v.decode("latin-1")
                break
        token = set_trace(trace_fields(header, self.project))
        t0 = time.perf_counter()
        sent = {"status": 500, "bytes": 0}

        async def wrapped(message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, wrapped)
        finally:
            route = getattr(scope.get("route"), "path", None) or "-"
            status = sent["status"]
            self.metrics.requests.labels(route, str(status)).inc()
            level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
            log(level, f"{scope['method']} {route} {status}",
                httpRequest={"requestMethod": scope["method"], "requestUrl": route, "status": status,
                             "responseSize": str(sent["bytes"]), "latency": f"{time.perf_counter() - t0:.6f}s",
                             "protocol": f"HTTP/{scope.get('http_version', '1.1')}"})
            reset_trace(token)
