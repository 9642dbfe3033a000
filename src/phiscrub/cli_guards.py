"""Guard rails checked before a job touches anything: where the outputs go, and which key
wrote them.

Each mistake caught here would otherwise be found late or never: a DST inside SRC is
read back as input by the next run; a DST that is a file ends in a traceback halfway in;
a rerun with another key mixes two pseudonym sets in one tree, which no later check can
untangle. Each check raises GuardError with one line that the CLI prints as a usage error.
Messages may name a path given on the command line (they go to the operator's console);
nothing here writes a path or a key under DST.
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from phiscrub.errors import PhiscrubError

if TYPE_CHECKING:
    from phiscrub.keys import KeyRing
    from phiscrub.pipeline.state import JobState

KEY_FINGERPRINT = "key_fingerprint"
KEY_MISMATCH = "DST was written with another key (key fingerprint differs); use the same key or another DST"
_BUCKETS = {"gs": "gs", "gcs": "gs", "s3": "s3"}  # gcs:// and gs:// name the same store


class GuardError(PhiscrubError):
    reason = "usage"


def check_key_options(key_file: Path | None, generate_key: Path | None) -> None:
    """Both would mean two keys for one run; which one wins would be a guess."""
    if key_file is not None and generate_key is not None:
        raise GuardError("--key-file and --generate-key together: pass one, the key of earlier runs or a new one")


def check_folder(path: Path, what: str) -> None:
    """A folder to be made or reused must not be, or sit under, an existing file: found
    here, that is a usage error instead of a traceback from mkdir or from the first write."""
    p = Path(os.path.abspath(path))
    if p.exists() and not p.is_dir():
        raise GuardError(f"{what} {path}: is a file, not a folder")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise GuardError(f"{what} {path}: {parent} is a file, not a folder")
            return


def make_folder(path: Path, what: str) -> None:
    check_folder(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # permission, read-only filesystem: the operator can act on it
        raise GuardError(f"{what} {path}: cannot create the folder ({e.strerror})") from None


def _location(uri: str | Path) -> tuple[str, tuple[str, ...]] | None:
    """(store, path parts) for a local path (symlinks resolved) or a bucket URI; None for
    a store whose names do not nest (DICOMweb), where no overlap is possible to judge."""
    from phiscrub.pipeline.storage import scheme_of

    text = str(uri)
    scheme = scheme_of(text)
    if scheme == "file":
        return "file", Path(text).resolve().parts
    if scheme in _BUCKETS:
        rest = text.partition("://")[2]
        return _BUCKETS[scheme], tuple(p for p in rest.split("/") if p)  # the bucket is the first part
    return None


def _relation(a: str | Path, b: str | Path) -> str:
    """'same', 'inside' (a under b), 'holds' (b under a) or '' (apart)."""
    la, lb = _location(a), _location(b)
    if la is None or lb is None or la[0] != lb[0]:
        return ""
    pa, pb = la[1], lb[1]
    if pa == pb:
        return "same"
    if pa[:len(pb)] == pb:
        return "inside"
    if pb[:len(pa)] == pa:
        return "holds"
    return ""


def check_apart(src: str, dst: str, quarantine: Path | None = None, state: Path | None = None) -> None:
    """Inputs and outputs never overlap, in either direction: what a run writes inside
    SRC (outputs, quarantined copies, its state) the next run would discover as input,
    and a SRC inside DST mixes originals into the released tree."""
    rel = _relation(dst, src)
    if rel == "same":
        raise GuardError("DST is SRC: the output folder must be outside the input")
    if rel == "inside":
        raise GuardError("DST is inside SRC: a rerun would take its own outputs as inputs; choose a DST outside SRC")
    if rel == "holds":
        raise GuardError("SRC is inside DST: the output folder must not hold the input")
    # a quarantine or state folder that merely holds SRC writes nothing into it
    for opt, path in (("--quarantine", quarantine), ("--state", state)):
        if path is not None and _relation(path, src) in ("same", "inside"):
            raise GuardError(f"{opt} must be outside SRC: a rerun would take what it holds as inputs")
    if quarantine is not None and _relation(quarantine, dst) in ("same", "inside"):
        raise GuardError("--quarantine must be outside the output folder")


def check_deidentify(src: str, dst: str, *, key_file: Path | None, generate_key: Path | None,
                     quarantine: Path | None, state: Path | None) -> None:
    """Every check deidentify can make before it reads a key or writes a byte."""
    from phiscrub.pipeline.storage import scheme_of

    check_key_options(key_file, generate_key)
    check_apart(src, dst, quarantine, state)
    if scheme_of(dst) == "file":
        check_folder(Path(dst), "DST")
    for opt, path in (("--quarantine", quarantine), ("--state", state)):
        if path is not None:
            check_folder(path, opt)


def open_state(sdir: Path, keys: KeyRing, what: str) -> JobState:
    """The job state in ``sdir``, made if new, once the key is known to be the one that
    wrote it; a refusal closes it again, so that a refused run leaves DST as it found it."""
    from phiscrub.pipeline.state import JobState

    make_folder(sdir, what)
    state = JobState(sdir / "state.sqlite")
    try:
        check_key(state, keys, sdir / "audit.jsonl")
    except GuardError:
        state.db.close()  # nothing of this run to commit
        raise
    return state


def key_fingerprint(keys: KeyRing) -> str:
    """A keyed hash of a fixed label: equal for equal keys, and says nothing of the key."""
    return keys.hash_hex("key-check", 32)


def check_key(state: JobState, keys: KeyRing, audit: Path) -> None:
    """Refuses a run whose key differs from the one that wrote this job; records the
    fingerprint on the first run. State older than the fingerprint has none: then the
    audit log's last keyed record (its MAC is under the key) is the witness."""
    mine = key_fingerprint(keys)
    seen = state.get_meta(KEY_FINGERPRINT)
    if seen is not None:
        if not hmac.compare_digest(seen, mine):
            raise GuardError(KEY_MISMATCH)
        return
    if not audit_key_matches(audit, keys):
        raise GuardError(KEY_MISMATCH)
    state.set_meta(KEY_FINGERPRINT, mine)


def audit_key_matches(audit: Path, keys: KeyRing) -> bool:
    """False only when the log's last record carries a MAC that this key does not make;
    no log, a keyless record or an unreadable tail is no evidence either way (a torn tail
    is dealt with when the log is opened)."""
    from phiscrub.pipeline.audit import _mac

    rec = _last_record(audit)
    if not rec or not isinstance(rec.get("mac"), str) or not isinstance(rec.get("hash"), str):
        return True
    return hmac.compare_digest(rec["mac"], _mac(keys, rec["hash"]))


def _last_record(path: Path) -> dict | None:
    """The last complete line of the log, read from its end: an audit of a long job is
    large, and only its last record is needed here."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            back = min(size, 1 << 16)
            fh.seek(size - back)
            chunk = fh.read(back)
    except OSError:
        return None
    lines = chunk.split(b"\n")
    lines = lines[:-1]  # the part after the last newline: '' or a torn record
    if back < size:
        lines = lines[1:]  # the first piece may be a record's tail
    for line in reversed(lines):
        if line.strip():
            try:
                rec = json.loads(line)
            except ValueError:
                return None
            return rec if isinstance(rec, dict) else None
    return None
