"""Keyed pseudonyms: one secret, HMAC-SHA256, and every worker maps a value the same way.

Deriving instead of storing means a cluster needs no shared lookup table and a rerun
reproduces the same output; without the key, the mapping cannot be reversed or replayed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from phiscrub.errors import KeyMissing

KEY_ENV = "PHISCRUB_KEY"
MIN_KEY_CHARS = 16
_B32 = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no I/O/0/1: pseudonyms get read aloud


@dataclass(frozen=True)
class KeyRing:
    """Derives every keyed value from one secret, each kind under its own domain label."""

    secret: bytes

    def digest(self, domain: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{domain}\x00{value}".encode(), hashlib.sha256).digest()

    def token(self, domain: str, value: str, length: int = 10) -> str:
        n = int.from_bytes(self.digest(domain, value), "big")
        out = []
        for _ in range(length):
            n, r = divmod(n, len(_B32))
            out.append(_B32[r])
        return "".join(out)

    def uid(self, source_uid: str) -> str:
        """A 2.25 UID (ISO/IEC 9834-8 style integer) from the first 128 bits of the HMAC."""
        return "2.25." + str(int.from_bytes(self.digest("uid", source_uid)[:16], "big"))

    def patient_id(self, identity: str) -> str:
        return "PS" + self.token("patient", identity, 10)

    def patient_name(self, identity: str) -> str:
        return "PS^" + self.token("patient", identity, 10)

    def value_pseudonym(self, value: str, length: int = 10) -> str:
        return "ID" + self.token("value", value, length)

    def date_offset(self, identity: str, min_days: int, max_days: int) -> int:
        """One offset per patient in [min_days, max_days], never zero."""
        span = max_days - min_days + 1
        n = int.from_bytes(self.digest("date", identity)[:8], "big")
        off = min_days + n % span
        if off == 0:
            off = min_days if min_days != 0 else max_days
        return off

    def hash_hex(self, value: str, length: int = 16) -> str:
        """Keyed hash for audit records: lets two records be matched, never reversed."""
        return self.digest("audit", value).hex()[:length]


def read_secret(key_file: Path | None, env: str, what: str = "key") -> str:
    """A secret from ``key_file`` if given, else from the environment variable ``env``;
    '' when that is unset. The error names what could not be read, never the path."""
    if key_file is None:
        return os.environ.get(env, "").strip()
    try:
        return key_file.read_text().strip()
    except OSError as e:
        raise KeyMissing(f"cannot read {what} file ({e.strerror})") from None


def load_key(key_file: Path | None = None) -> KeyRing:
    text = read_secret(key_file, KEY_ENV)
    if not text:
        raise KeyMissing(
            f"no key: set {KEY_ENV}, pass --key-file, or create one with --generate-key PATH"
        )
    if len(text) < MIN_KEY_CHARS:
        raise KeyMissing(f"key too short: at least {MIN_KEY_CHARS} characters")
    return KeyRing(text.encode())


def generate_key_file(path: Path) -> Path:
    """Writes 256 random bits as hex, readable by the owner only (0600)."""
    path = path.expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    os.chmod(path, 0o600)
    return path
