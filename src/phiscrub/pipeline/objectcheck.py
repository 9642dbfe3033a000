"""After a PUT, confirm that the stored object is the bytes that passed the release check.

Why: the check runs on the buffer before the upload (nothing unchecked is published), but
what a reader gets is what the store holds. A body damaged on the way, or changed by
something between us and the store, would be published unchecked. So every upload is
confirmed against the MD5 of what was checked:

- GCS reports ``md5Hash`` (Base64) for objects uploaded whole: compared, and a mismatch is
  final (composite objects have none: read back).
- S3 reports an ``ETag`` that is the hex MD5 for a single-part upload without KMS
  encryption. A plain ETag that differs may be a KMS one: read back rather than condemn a
  good object.
- A multipart upload's ETag is '<MD5 of the parts' MD5s>-<parts>'. For a file we uploaded
  in parts of a size we chose, that is computed from the local file (read from local disk,
  not the network): equal, the object is confirmed without reading a slide of gigabytes
  back; different (another part size, KMS), read back.
- Otherwise the object is read back, streamed in chunks, and its MD5 compared.

A mismatch deletes the object and raises TransientError (the runner's retry PUTs the
checked bytes again; when retries run out the item is not done). Messages name no key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path
from typing import Any

from phiscrub.errors import TransientError

CHUNK = 1 << 20


def file_digests(path: Path, part_size: int | None = None) -> tuple[str, str | None]:
    """(hex MD5 of the file; with ``part_size``, the ETag S3 gives a multipart upload of it
    in parts of that size (the last one shorter): the MD5 of the parts' binary MD5s, '-',
    the number of parts), from one read of the file: a slide is gigabytes."""
    whole = hashlib.md5(usedforsecurity=False)
    digests: list[bytes] = []
    part, filled = hashlib.md5(usedforsecurity=False), 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            whole.update(chunk)
            view = memoryview(chunk)
            while part_size and view:
                take = view[: part_size - filled]
                part.update(take)
                filled += len(take)
                view = view[len(take):]
                if filled == part_size:
                    digests.append(part.digest())
                    part, filled = hashlib.md5(usedforsecurity=False), 0
    if not part_size:
        return whole.hexdigest(), None
    if filled:
        digests.append(part.digest())
    return whole.hexdigest(), f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def md5_of_object(fs: Any, key: str) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with fs.open(key, "rb", block_size=CHUNK) as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _etag(info: dict) -> str:
    return str(info.get("ETag") or info.get("etag") or "").strip('"').lower()


def reported_md5(info: dict) -> tuple[str | None, bool]:
    """(hex MD5 the store reports, whether a mismatch with it is final)."""
    b64 = info.get("md5Hash")
    if b64:
        try:
            return base64.b64decode(b64).hex(), True
        except (binascii.Error, ValueError):
            return None, False
    etag = _etag(info)
    if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):
        return etag, False  # S3 single part: the MD5, unless KMS made it something else
    return None, False


def confirm_stored(fs: Any, key: str, md5_hex: str, size: int, multipart: str | None = None) -> None:
    """Raises TransientError, after deleting the object, unless the store holds exactly
    ``size`` bytes with MD5 ``md5_hex`` under ``key``. ``multipart``: the ETag a multipart
    upload of those bytes gets, in the parts it was sent in (:func:`file_digests`)."""
    fs.invalidate_cache(key)  # a listing cached before the PUT must not answer for it
    info = fs.info(key)
    stored_size = info.get("size")
    if stored_size is not None and int(stored_size) != size:
        _reject(fs, key, "size")
    reported, final = reported_md5(info)
    if reported == md5_hex:
        return
    if reported is not None and final:
        _reject(fs, key, "MD5 reported by the store")
    if multipart is not None and _etag(info) == multipart:
        return
    if md5_of_object(fs, key) != md5_hex:
        _reject(fs, key, "MD5 of the object read back")


def _reject(fs: Any, key: str, what: str) -> None:
    try:
        fs.rm_file(key)
        gone = "removed"
    except Exception:  # noqa: BLE001 - the error below says what matters: it is not confirmed
        gone = "and could not be removed"
    raise TransientError(f"upload not confirmed: the stored object differs from the checked bytes ({what}); {gone}")
