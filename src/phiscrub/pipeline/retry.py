"""Retries for storage and network errors: exponential backoff with full jitter, bounded.

Why by hand: the call sites are a handful of storage operations whose attempt count the job
state records; a retry library would hide that count. Transient means the same request may
succeed later (a dropped connection, a timeout, HTTP 429 or 5xx from a store); a missing
object, a refused permission or a bad file is permanent and is not retried.
"""

from __future__ import annotations

import errno
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_PERMANENT_OS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)
_PERMANENT_ERRNO = {errno.ENOSPC, errno.EROFS, errno.ENAMETOOLONG, errno.EDQUOT, errno.EACCES, errno.ENOENT}
_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}
# exception classes of the storage clients, by name (their modules are optional imports)
_TRANSIENT_NAMES = {
    "EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError", "ConnectTimeoutError",
    "ResponseStreamingError", "IncompleteReadError", "ClientConnectorError", "ServerDisconnectedError",
    "ClientPayloadError", "ServerTimeoutError", "ClientOSError", "ChunkedEncodingError", "ConnectionError",
    "RemoteDisconnected", "ProtocolError", "TransportError", "RetryError",
}


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5  # in all, the first try included
    base_s: float = 0.2
    cap_s: float = 10.0

    def delay(self, attempt: int) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**attempt)],
        so many workers that failed together do not retry together."""
        return random.uniform(0, min(self.cap_s, self.base_s * (2 ** attempt)))


def http_status(exc: BaseException) -> int | None:
    for attr in ("code", "status", "status_code"):
        v = getattr(exc, attr, None)
        if isinstance(v, int) and 100 <= v < 600:
            return v
    resp = getattr(exc, "response", None)
    if isinstance(resp, dict):  # botocore ClientError
        v = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(v, int):
            return v
    v = getattr(resp, "status_code", None)
    return v if isinstance(v, int) else None


def is_transient(exc: BaseException) -> bool:
    from phiscrub.errors import StorageError, TransientError

    if isinstance(exc, (TransientError, StorageError)):  # classified where raised (DICOMweb)
        return isinstance(exc, TransientError)
    status = http_status(exc)
    if status is not None:
        return status in _TRANSIENT_HTTP
    if isinstance(exc, _PERMANENT_OS):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if any(c.__name__ in _TRANSIENT_NAMES for c in type(exc).__mro__):
        return True
    if isinstance(exc, OSError):
        return exc.errno not in _PERMANENT_ERRNO
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and is_transient(cause)


class Attempts:
    """Counts the tries an item took across its storage operations (stored in the state)."""

    def __init__(self, policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep) -> None:
        self.policy = policy
        self.retries = 0
        self._sleep = sleep

    @property
    def total(self) -> int:
        return 1 + self.retries

    def call(self, fn: Callable[[], T]) -> T:
        n = 0
        while True:
            try:
                return fn()
            except Exception as e:
                n += 1
                if n >= self.policy.attempts or not is_transient(e):
                    raise
                self.retries += 1
                self._sleep(self.policy.delay(n))


class TransientExhausted(Exception):
    """A storage operation still failed after the policy's attempts (the item fails and a
    rerun tries it again)."""
