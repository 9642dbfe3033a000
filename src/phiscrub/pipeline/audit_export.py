"""Audit records as JSON lines for Google Cloud Logging or a BigQuery load job.

Why a fixed shape: Cloud Logging indexes a LogEntry's ``severity`` and ``timestamp`` and
keeps the record itself as ``jsonPayload``; BigQuery needs a declared schema, so the
nested parts (actions, PHI counts, boxes, manifest) go into JSON columns and the fields
one filters on are top-level columns. Retention is applied where the records are sent
(the log bucket's or table's expiration, from ``audit.retention_days``): the local log is
the evidence and is never pruned here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

FORMATS = ("cloud-logging", "bigquery")
LOG_ID = "phiscrub-audit"

# BigQuery schema of the 'bigquery' export (docs/audit_bigquery_schema.json is this list)
BIGQUERY_SCHEMA: list[dict[str, str]] = [
    {"name": "seq", "type": "INTEGER", "mode": "REQUIRED", "description": "position in the hash chain, from 1"},
    {"name": "timestamp", "type": "TIMESTAMP", "mode": "REQUIRED", "description": "when the record was appended (UTC)"},
    {"name": "event", "type": "STRING", "mode": "REQUIRED", "description": "run-start, item, run-end, torn-tail, broker-lookup..."},
    {"name": "severity", "type": "STRING", "mode": "REQUIRED", "description": "INFO, WARNING (quarantined), ERROR (failed)"},
    {"name": "item", "type": "STRING", "mode": "NULLABLE", "description": "keyed hash of the source URI (never the URI)"},
    {"name": "status", "type": "STRING", "mode": "NULLABLE", "description": "done, dropped, quarantined or failed"},
    {"name": "category", "type": "STRING", "mode": "NULLABLE", "description": "reason category (io, verification, ...)"},
    {"name": "reason", "type": "STRING", "mode": "NULLABLE", "description": "typed error message; never holds a value"},
    {"name": "output", "type": "STRING", "mode": "NULLABLE", "description": "output path or URI (pseudonyms and new UIDs)"},
    {"name": "policy", "type": "STRING", "mode": "NULLABLE", "description": "policy hash"},
    {"name": "version", "type": "STRING", "mode": "NULLABLE", "description": "phiscrub version"},
    {"name": "verification", "type": "STRING", "mode": "NULLABLE", "description": "passed, failed or not-run"},
    {"name": "seconds", "type": "FLOAT", "mode": "NULLABLE", "description": "worker time for the item, when the runner reports it"},
    {"name": "size", "type": "INTEGER", "mode": "NULLABLE", "description": "source size in bytes"},
    {"name": "phi", "type": "JSON", "mode": "NULLABLE", "description": "PHI categories found and their counts"},
    {"name": "pixel_boxes", "type": "JSON", "mode": "NULLABLE", "description": "redacted rectangles (frame, x, y, w, h, reason)"},
    {"name": "actions", "type": "JSON", "mode": "NULLABLE", "description": "actions per tag (tags and counts only)"},
    {"name": "record", "type": "JSON", "mode": "REQUIRED", "description": "the whole audit record as written"},
    {"name": "retention_days", "type": "INTEGER", "mode": "REQUIRED", "description": "audit.retention_days at export"},
    {"name": "hash", "type": "STRING", "mode": "REQUIRED", "description": "SHA-256 of the record (chain link)"},
    {"name": "prev", "type": "STRING", "mode": "REQUIRED", "description": "hash of the previous record"},
]


def severity(rec: dict) -> str:
    event, status = rec.get("event"), rec.get("status")
    if event == "anchor-mismatch":
        return "ALERT"
    if event == "torn-tail" or status == "quarantined":
        return "WARNING"
    if status == "failed":
        return "ERROR"
    return "INFO"


def rfc3339(t: float | int | None) -> str:
    return datetime.fromtimestamp(float(t or 0), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def cloud_logging(rec: dict, project: str, retention_days: int) -> dict:
    """A LogEntry (entries.write / `gcloud logging write` shape)."""
    return {
        "logName": f"projects/{project}/logs/{LOG_ID}",
        "resource": {"type": "global", "labels": {"project_id": project}},
        "timestamp": rfc3339(rec.get("time")),
        "severity": severity(rec),
        "insertId": str(rec.get("hash", ""))[:32],
        "labels": {"event": str(rec.get("event", "")), "seq": str(rec.get("seq", "")),
                   "retention_days": str(retention_days)},
        "jsonPayload": rec,
    }


def bigquery_row(rec: dict, retention_days: int) -> dict:
    row = {
        "seq": rec.get("seq"),
        "timestamp": rfc3339(rec.get("time")),
        "event": rec.get("event"),
        "severity": severity(rec),
        "retention_days": retention_days,
        "record": json.dumps(rec, sort_keys=True, separators=(",", ":")),
        "hash": rec.get("hash"),
        "prev": rec.get("prev"),
    }
    for name in ("item", "status", "category", "reason", "output", "policy", "version", "verification", "seconds", "size"):
        if rec.get(name) not in (None, ""):
            row[name] = rec[name]
    for name in ("phi", "pixel_boxes", "actions"):
        if rec.get(name):
            row[name] = json.dumps(rec[name], sort_keys=True, separators=(",", ":"))
    return row


def export(records: Iterable[dict], fmt: str, *, retention_days: int, project: str = "PROJECT_ID") -> Iterator[str]:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {list(FORMATS)}")
    for rec in records:
        doc = cloud_logging(rec, project, retention_days) if fmt == "cloud-logging" else bigquery_row(rec, retention_days)
        yield json.dumps(doc, sort_keys=True, separators=(",", ":"))


def retention_hint(fmt: str, retention_days: int, project: str) -> str:
    """The command that applies the retention where the records go (printed, not run)."""
    if fmt == "cloud-logging":
        return (f"set the log bucket's retention: gcloud logging buckets update BUCKET --location=LOCATION "
                f"--retention-days={retention_days} --project={project}")
    return (f"create the table with this retention: bq mk --table --time_partitioning_field=timestamp "
            f"--time_partitioning_expiration={retention_days * 86400} {project}:DATASET.phiscrub_audit SCHEMA.json")
