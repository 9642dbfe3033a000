"""Honest broker (off by default): an encrypted map from original identifiers to the
pseudonyms a job wrote, so that an authorised person can re-identify a patient or study.

Why a second key: the pseudonym key (PHISCRUB_KEY) lets the pipeline derive pseudonyms;
it must not also let anyone reverse them. The map is encrypted with a separate broker key
that only the honest broker holds, so whoever runs the pipeline or reads DST cannot
re-identify, and the broker cannot produce pseudonyms for new data.

Format: ``DST/.phiscrub/broker.map``, one AES-256-GCM record per line (Base64 of nonce +
ciphertext), each holding one (kind, original, pseudonym) triple as JSON. The nonce is an
HMAC of the plaintext under a key derived from the broker key (a synthetic IV): the same
pair always encrypts to the same line, so reruns are byte-identical and a repeated pair is
recognised without decrypting, while different pairs never share a nonce. The map is never
written in clear, not even to a temporary file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from phiscrub.errors import KeyMissing
from phiscrub.keys import read_secret

BROKER_KEY_ENV = "PHISCRUB_BROKER_KEY"
MAP_NAME = "broker.map"
# what is mapped: the identifiers a re-identification request names
KINDS = ("PatientID", "PatientName", "StudyInstanceUID", "AccessionNumber", "SeriesInstanceUID", "SOPInstanceUID")
_MIN_CHARS = 16


class BrokerKey:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < _MIN_CHARS:
            raise KeyMissing(f"broker key too short: at least {_MIN_CHARS} characters")
        master = hashlib.sha256(b"phiscrub-broker\x00" + secret).digest()
        self._enc = hmac.new(master, b"enc", hashlib.sha256).digest()
        self._iv = hmac.new(master, b"iv", hashlib.sha256).digest()
        self.secret = secret

    def encrypt(self, plain: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = hmac.new(self._iv, plain, hashlib.sha256).digest()[:12]
        return nonce + AESGCM(self._enc).encrypt(nonce, plain, b"phiscrub-broker-v1")

    def decrypt(self, blob: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self._enc).decrypt(blob[:12], blob[12:], b"phiscrub-broker-v1")


def load_broker_key(key_file: Path | None, pseudonym_secret: bytes | None = None) -> BrokerKey | None:
    """The broker key from --broker-key FILE or $PHISCRUB_BROKER_KEY; None when neither is
    given (the broker is off). Refuses the pseudonym key itself."""
    text = read_secret(key_file, BROKER_KEY_ENV, "broker key")
    if not text:
        if key_file is None:
            return None
        raise KeyMissing("broker key file is empty")
    secret = text.encode()
    if pseudonym_secret is not None and hmac.compare_digest(secret, pseudonym_secret):
        raise KeyMissing("the broker key must not be the pseudonym key")
    return BrokerKey(secret)


def capture(ds) -> dict[str, str]:
    """The original identifiers of a source dataset (call before the transform changes it)."""
    out = {}
    for kind in KINDS:
        v = ds.get(kind)
        if v is not None and str(v).strip():
            out[kind] = str(v).strip()
    return out


def pairs(originals: dict[str, str], output) -> list[tuple[str, str, str]]:
    """(kind, original, pseudonym) for each captured identifier; the pseudonym is what the
    output holds ('' when the policy removed it)."""
    res = []
    for kind, orig in sorted(originals.items()):
        v = output.get(kind)
        res.append((kind, orig, str(v).strip() if v is not None else ""))
    return res


class BrokerMap:
    """Appends encrypted pairs; a pair already in the map is not written again."""

    def __init__(self, state_dir: Path, key: BrokerKey) -> None:
        self.path = state_dir / MAP_NAME
        self.key = key
        self.seen: set[bytes] = set()
        if self.path.exists():
            self.seen = {line.strip() for line in self.path.read_bytes().splitlines() if line.strip()}
        self._fh = None
        self.added = 0

    def add(self, triples: Iterable[tuple[str, str, str]]) -> None:
        for kind, orig, pseudo in triples:
            plain = json.dumps([kind, orig, pseudo], ensure_ascii=False, separators=(",", ":")).encode()
            line = base64.b64encode(self.key.encrypt(plain))
            if line in self.seen:
                continue
            if self._fh is None:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._fh = os.fdopen(fd, "ab")
            self._fh.write(line + b"\n")
            self.seen.add(line)
            self.added += 1

    def add_result(self, result: object) -> None:
        """The pairs a worker sent with its result (ItemResult.broker: captured from the
        source before the transform and read from the output after it, wherever the item
        came from); never audited."""
        triples = getattr(result, "broker", None)
        if triples:
            self.add(triples)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None


def entries(state_dir: Path, key: BrokerKey) -> Iterator[tuple[str, str, str]]:
    """Every pair in the map. A line that does not decrypt (another key, or torn by an
    interrupted run) raises KeyMissing if none does, else is skipped."""
    from cryptography.exceptions import InvalidTag

    path = state_dir / MAP_NAME
    if not path.exists():
        return
    good = bad = 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            kind, orig, pseudo = json.loads(key.decrypt(base64.b64decode(line)))
        except (InvalidTag, ValueError, TypeError):
            bad += 1
            continue
        good += 1
        yield kind, orig, pseudo
    if bad and not good:
        raise KeyMissing("the broker key does not open this map")


def lookup(state_dir: Path, key: BrokerKey, value: str, kind: str | None = None) -> list[tuple[str, str, str]]:
    """Pairs whose original or pseudonym equals ``value`` (both directions: re-identify a
    pseudonym, or find the pseudonym of a known patient or study)."""
    v = value.strip()
    return sorted({(k, o, p) for k, o, p in entries(state_dir, key)
                   if (kind is None or k == kind) and v in (o, p)})
