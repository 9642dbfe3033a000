"""Request bodies read within limits, and what an upload is, told from its bytes.

A declared Content-Length over the limit is refused before a byte is read; a body that
runs past the limit while streaming (chunked, or a lying header) is cut off there. An
upload is spooled to a private file, never held whole in memory (slides are gigabytes).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from fastapi import HTTPException, Request

_TIFF = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_HEAD = 1 << 16


def declared_length(request: Request, limit: int) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise HTTPException(400, "Content-Length is not a number")
    n = int(raw)
    if n > limit:
        raise HTTPException(413, f"body of {n} bytes is over the limit of {limit} bytes")
    return n


async def read_capped(request: Request, limit: int) -> bytes:
    declared_length(request, limit)
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > limit:
            raise HTTPException(413, f"body is over the limit of {limit} bytes")
    return bytes(buf)


async def spool_upload(request: Request, spool: Path, limit: int) -> tuple[Path, int, str]:
    """(file, size, sha256 hex) of the body, in a folder of its own under the spool."""
    declared_length(request, limit)
    folder = spool / uuid.uuid4().hex
    folder.mkdir(mode=0o700)
    path = folder / "upload"
    h = hashlib.sha256()
    size = 0
    try:
        with open(path, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"body is over the limit of {limit} bytes")
                h.update(chunk)
                fh.write(chunk)
    except BaseException:
        remove_tree(folder)
        raise
    if size == 0:
        remove_tree(folder)
        raise HTTPException(400, "empty body: send the file's bytes as the request body")
    return path, size, h.hexdigest()


def sniff(path: Path) -> str | None:
    """'dicom' | 'slide' | 'annotation' | None (not something phiscrub de-identifies)."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD)
    if head[:4] in _TIFF:
        from phiscrub.wsi import registry

        try:
            if registry.detect(path) is not None:
                return "slide"
        except Exception:  # noqa: BLE001 - a sniffer choking on a malformed TIFF: not a slide
            pass
        return "dicom" if head[128:132] == b"DICM" else None
    if head[128:132] == b"DICM":
        return "dicom"
    if len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[2:4] == b"\x00\x00":
        return "dicom"  # no preamble: starts with a group 0002/0008 element 0000 (group length)
    if len(head) >= 8 and head[:2] == b"\x08\x00" and head[4:6].isalpha():
        return "dicom"  # no preamble, explicit VR, group 0008
    from phiscrub.wsi.annotations import sniff_bytes

    try:
        if sniff_bytes(head) is not None:
            return "annotation"
    except Exception:  # noqa: BLE001
        pass
    return None


def remove_tree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
