"""JSON log lines in the shape Cloud Logging reads from a container's stdout/stderr:
``severity``, ``message``, ``logging.googleapis.com/trace`` (from X-Cloud-Trace-Context,
so a request's lines group under its trace), ``httpRequest`` for access lines.

Never PHI: messages are built here from route templates, status codes, keyed hashes and
typed error reasons; a request's path, query string, body or a library's exception text
is never logged (an object name or an uploaded file's header may hold a patient's name).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any

LOGGER = "phiscrub.service"
_TRACE_RE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20}))?(?:;o=([01]))?$")
_trace: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("phiscrub_trace", default=None)


def trace_fields(header: str | None, project: str) -> dict[str, Any]:
    """X-Cloud-Trace-Context 'TRACE_ID/SPAN_ID;o=1' to Cloud Logging's special fields; a
    malformed header is ignored (it is client input)."""
    m = _TRACE_RE.match((header or "").strip())
    if not m:
        return {}
    trace_id, span, sampled = m.groups()
    out: dict[str, Any] = {"logging.googleapis.com/trace": f"projects/{project or '-'}/traces/{trace_id.lower()}"}
    if span:
        out["logging.googleapis.com/spanId"] = format(int(span), "016x")
    if sampled is not None:
        out["logging.googleapis.com/trace_sampled"] = sampled == "1"
    return out


def set_trace(fields: dict[str, Any]) -> contextvars.Token:
    return _trace.set(fields)


def reset_trace(token: contextvars.Token) -> None:
    _trace.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _severity(record.levelno),
            "message": record.getMessage(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "logger": record.name,
        }
        entry.update(_trace.get() or {})
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            entry.update(extra)
        if record.exc_info and record.exc_info[0] is not None:
            # the type only: an exception's text may quote what it choked on
            entry["error_type"] = record.exc_info[0].__name__
        return json.dumps(entry, separators=(",", ":"), default=str)


def _severity(level: int) -> str:
    if level >= logging.CRITICAL:
        return "CRITICAL"
    if level >= logging.ERROR:
        return "ERROR"
    if level >= logging.WARNING:
        return "WARNING"
    if level >= logging.INFO:
        return "INFO"
    return "DEBUG"


def configure(stream=None) -> logging.Logger:
    """Our logger and uvicorn's error logger write JSON lines; uvicorn's access log is
    off (it logs the raw path and query), ours logs the route template instead."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in (LOGGER, "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(logging.INFO)
        lg.propagate = False
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = []
    access.propagate = False
    access.disabled = True
    return logging.getLogger(LOGGER)


def log(level: int, message: str, **fields: Any) -> None:
    logging.getLogger(LOGGER).log(level, message, extra={"fields": fields} if fields else None)
