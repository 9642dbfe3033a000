"""Prometheus metrics, in a registry of the app's own (two apps in one process, as in the
tests, do not collide). Labels are closed sets (status, kind, channel, PHI category,
route template): never an object name, a path or a value."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from phiscrub.pipeline.phi_categories import categorize

_LATENCY = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.items = Counter("phiscrub_items", "Items processed, by status, kind and channel",
                             ["status", "kind", "channel"], registry=r)
        self.latency = Histogram("phiscrub_item_seconds", "Time to process one item, by kind",
                                 ["kind"], buckets=_LATENCY, registry=r)
        self.bytes = Counter("phiscrub_bytes_processed", "Input bytes processed, by kind", ["kind"], registry=r)
        self.phi = Counter("phiscrub_phi_found", "PHI found and acted on, by category", ["category"], registry=r)
        self.duplicates = Counter("phiscrub_events_duplicate", "Redelivered events that did nothing", ["channel"], registry=r)
        self.requests = Counter("phiscrub_http_requests", "HTTP requests, by route template and status code",
                                ["route", "code"], registry=r)
        self.review = Gauge("phiscrub_review_queue", "Quarantined items awaiting review", registry=r)
        self.jobs = Gauge("phiscrub_jobs_running", "Async jobs running", registry=r)

    def item(self, result: object, kind: str, channel: str) -> None:
        status = getattr(result, "status", "unknown")
        self.items.labels(status, kind, channel).inc()
        self.latency.labels(kind).observe(float(getattr(result, "seconds", 0.0) or 0.0))
        self.bytes.labels(kind).inc(int(getattr(result, "size", 0) or 0))
        for cat, n in categorize(getattr(result, "manifest", None)).items():
            self.phi.labels(cat).inc(n)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def item_kind(result: object) -> str:
    """dicom | slide | annotation | unknown, from the PHI-free manifest the runner returns
    (a failed item has none: then from its reason category)."""
    m = getattr(result, "manifest", None) or {}
    if "actions" in m:
        return "dicom"
    if "associated" in m or "levels" in m:
        return "slide"
    if "removed" in m or "spans_replaced" in m:
        return "annotation"
    cat = getattr(result, "category", "")
    if cat in ("not-dicom", "corrupt", "incomplete", "duplicate"):
        return "dicom"
    return "unknown"
