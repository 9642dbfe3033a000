"""What the service is told at start: from `phiscrub serve` options, else environment
variables (the Cloud Run / Kubernetes way), else safe defaults.

Secure by default: bearer tokens are required unless auth is switched off explicitly
(PHISCRUB_SERVE_AUTH=none, meant for a platform that authenticates before the container,
such as Cloud Run with IAM invoker checks); jobs may only touch storage under roots the
operator lists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ENV = "PHISCRUB_SERVE_"


def _env(name: str, default: str = "") -> str:
    return os.environ.get(ENV + name, default).strip()


def _list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _int(name: str, default: int) -> int:
    raw = _env(name)
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{ENV}{name} must be an integer") from None


@dataclass
class Settings:
    state_dir: Path = Path("phiscrub-service")  # SQLite state, audit log, quarantine, spool
    policies_dir: Path | None = None  # NAME.yaml / NAME.json; 'default' is built in unless given
    tokens: tuple[str, ...] = ()
    auth: bool = True  # False only when the platform authenticates every request first
    event_dst: str = ""  # where bucket-event items are written (folder or any sink URI)
    event_policy: str = "default"
    buckets: tuple[str, ...] = ()  # events from other buckets are refused (empty: any)
    job_roots: tuple[str, ...] = ()  # SRC and DST of a job must start with one of these
    job_workers: int = 1  # 1: in a thread of the server; more: a process pool per job
    max_upload_bytes: int = 1 << 30
    max_event_bytes: int = 1 << 20
    concurrency: int = 0  # items processed at once (0: one per core)
    lease_s: float = 900.0  # an event claimed this long ago without a result may be retried
    project: str = ""  # Google Cloud project for log trace fields
    key_file: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls) -> Settings:
        tokens = list(_list(_env("TOKENS")))
        tokens_file = _env("TOKENS_FILE")
        if tokens_file:
            tokens += read_tokens(Path(tokens_file))
        policies = _env("POLICIES")
        key_file = _env("KEY_FILE") or os.environ.get("PHISCRUB_KEY_FILE", "")
        return cls(
            state_dir=Path(_env("STATE", "phiscrub-service")),
            policies_dir=Path(policies) if policies else None,
            tokens=tuple(tokens),
            auth=_env("AUTH", "token").lower() not in ("none", "off", "false", "0"),
            event_dst=_env("EVENT_DST"),
            event_policy=_env("EVENT_POLICY", "default"),
            buckets=_list(_env("BUCKETS")),
            job_roots=_list(_env("JOB_ROOTS")),
            job_workers=_int("JOB_WORKERS", 1),
            max_upload_bytes=_int("MAX_BYTES", 1 << 30),
            concurrency=_int("CONCURRENCY", 0),
            project=_env("PROJECT") or os.environ.get("GOOGLE_CLOUD_PROJECT", ""),
            key_file=Path(key_file) if key_file else None,
        )


def read_tokens(path: Path) -> list[str]:
    """One token a line; blank lines and '#' comments skipped. Short tokens are refused:
    a bearer token is the only thing between the network and the PHI pipeline."""
    out = []
    for line in path.read_text().splitlines():
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        if len(t) < 16:
            raise ValueError(f"{path.name}: a token is shorter than 16 characters")
        out.append(t)
    return out
