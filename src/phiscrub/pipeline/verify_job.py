"""`phiscrub verify SRC DST`: an independent re-read of a finished job.

Why a second look when every output already passed the gate: the gate runs inside the
worker that made the output, one item at a time. This re-reads everything from storage
afterwards, item by item (header bytes, decoded text fields, paths, and OCR of pixels that
carried burned-in text) and across items, where one item alone cannot tell: that a study
kept one new UID and one patient pseudonym, that every item is accounted for, that every
reference points at an output of the same job, that no file appeared that the job did not
write, and that nothing in the state folder or the file names holds a source value.

Sources are matched to outputs through the audit log (keyed hashes of source URIs), so the
key is needed; every problem is one PHI-free line (output paths are built from pseudonyms
and new UIDs; a source is named by its keyed hash).

Source and destination are trees (trees.py): a local folder, or a gs:// / s3:// prefix read
from the bucket itself. A job whose destination is a bucket keeps its audit log and job
state in a local state folder (``--state``), which is scanned like DST/.phiscrub.
"""

from __future__ import annotations

import io
import os
import re
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from phiscrub.keys import KeyRing
from phiscrub.pipeline.audit import read_records
from phiscrub.pipeline.discover import discover
from phiscrub.pipeline.trees import LocalTree, Tree, is_bucket, open_tree
from phiscrub.pipeline.verify import (
    _found,
    collect_probe,
    ocr_leaks,
    text_field_leaks,
    verify_output,
)
from phiscrub.policy.config import Config

STATE = ".phiscrub"
# Items re-read at once. A bucket's reads wait on the network (one after another, a million
# objects is days); parsing and the codecs hold the GIL and OCR runs under its engine's lock,
# so on a local folder the threads gain little. Slides stay one at a time: a bucket's slide
# is fetched to a temporary folder whole, source and output.
VERIFY_THREADS = 8
_NOT_SCANNED = {"broker.map"}  # ciphertext: it holds original IDs, encrypted, by design
MIN_NAME_PART = 6
STATE_LABEL = "[state] "  # how paths in a state folder outside DST are shown


@dataclass
class JobCheck:
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    outputs: int = 0
    ocr_checked: int = 0
    ocr_available: bool = True


@dataclass
class ItemFindings:
    """What re-reading one DICOM output found, merged into the job's check in source order
    (so the report does not depend on which thread finished first)."""

    problems: list[str] = field(default_factory=list)
    study: tuple[str, str, str] | None = None  # (source study, new study, new patient)
    patient: tuple[str, str] | None = None  # (source patient ID, new patient ID)
    sop: str = ""
    references: list[tuple[str, str]] = field(default_factory=list)
    strict_texts: set[str] = field(default_factory=set)
    ocr_checked: bool = False
    ocr_unavailable: bool = False


@dataclass(frozen=True)
class SourceEntry:
    rel: str  # relative to the source tree's root ('/'-separated): read through the tree
    hashes: tuple[str, ...]  # keyed hashes a runner may have recorded for it; the first names it


def source_hashes(keys: KeyRing, path: Path) -> list[str]:
    """The keyed hashes a runner may have recorded for a local source (its path, or its
    file URI), so the check does not depend on which one a runner version uses."""
    ap = os.path.abspath(path)
    forms = ("path:" + ap, "path:" + Path(ap).as_uri(), "uri:" + ap, "uri:" + Path(ap).as_uri())
    return [keys.hash_hex(f) for f in forms]


def list_sources(src: str | Path, keys: KeyRing) -> tuple[Tree, list[SourceEntry]]:
    """The job's source as a tree and its items, each with the hashes its audit record may
    carry. A bucket's items are listed by ObjectSource itself, so their URIs (and hashes)
    are exactly the ones the runner recorded."""
    if not is_bucket(src):
        path = Path(src)
        root = path if path.is_dir() else path.parent
        entries = []
        for p in discover(path):
            rel = p.relative_to(root) if p.is_relative_to(root) else Path(p.name)
            entries.append(SourceEntry(rel.as_posix(), tuple(source_hashes(keys, p))))
        return LocalTree(root), entries
    from phiscrub.pipeline.objectstore import ObjectSource

    source = ObjectSource(str(src))
    items = list(source.items())
    keys_of = [it.uri.partition("://")[2] for it in items]
    root = source.root
    if keys_of == [root]:  # SRC names one object: its folder is the tree
        root = root.rpartition("/")[0] or root
    tree = open_tree(f"{source.scheme}://{root}")
    n = len(root) + 1
    return tree, [SourceEntry(k[n:], (keys.hash_hex("path:" + it.uri),)) for k, it in zip(keys_of, items, strict=True)]


def _final_records(state: Path) -> tuple[dict[str, dict], bool]:
    log = state / "audit.jsonl"
    if not log.exists():
        return {}, False
    last: dict[str, dict] = {}
    for rec in read_records(log):
        if rec.get("event") == "item" and rec.get("item"):
            last[rec["item"]] = rec  # a rerun's record supersedes an earlier attempt
    return last, True


def verify_job(src: str | Path, dst: str | Path, config: Config, keys: KeyRing, *, ocr: bool = True,
               state: Path | None = None, threads: int = VERIFY_THREADS) -> JobCheck:
    """``src`` and ``dst``: folders or gs:// / s3:// URIs; ``state``: the job's state folder
    (default DST/.phiscrub, which a bucket DST does not have); ``threads``: DICOM items
    re-read at once."""
    res = JobCheck()
    p = res.problems
    if state is None:
        if is_bucket(dst):
            raise ValueError("a bucket destination needs its state folder")
        state = Path(dst) / STATE
    out_tree = open_tree(dst)
    state_inside = not is_bucket(dst) and Path(state).absolute() == (Path(dst) / STATE).absolute()
    records, have_log = _final_records(state)
    if not have_log:
        p.append("no audit log in the state folder: not a phiscrub job, or its state folder is missing")
        return res
    src_tree, sources = list_sources(src, keys)
    listing = [(rel, is_dir) for rel, is_dir in out_tree.walk()]
    present = {rel for rel, is_dir in listing if not is_dir}
    expected: set[str] = set()  # relative output paths the job says it wrote
    studies: dict[str, set[tuple[str, str]]] = defaultdict(set)  # source study -> {(new study, patient)}
    patients: dict[str, set[str]] = defaultdict(set)  # source patient id -> {pseudonym}
    sop_uids: set[str] = set()
    references: list[tuple[str, str]] = []  # (output relpath, referenced SOP instance UID)
    strict_texts: set[str] = set()
    matched: set[str] = set()
    # every source's file and folder names, before any output is looked at: an output
    # must not hold any of them, not only those of the sources listed before it
    name_parts = {_stem(x).lower() for e in sources for x in PurePosixPath(e.rel).parts if len(_stem(x)) >= MIN_NAME_PART}
    dicoms: list[tuple[SourceEntry, str, dict]] = []
    others: list[tuple[str, SourceEntry, list[str]]] = []
    for entry in sources:
        rec = next((records[h] for h in entry.hashes if h in records), None)
        if rec is None:
            p.append(f"source {entry.hashes[0]}: no record in the job (never processed)")
            continue
        matched.add(rec["item"])
        status = rec.get("status", "")
        res.counts[status] += 1
        if status != "done":
            continue
        outs = _outputs(rec)
        expected |= set(outs)
        for rel in outs:
            if rel not in present:
                p.append(f"{rel}: recorded as done but missing")
        if not outs or outs[0] not in present:
            continue
        res.outputs += len(outs)
        kind = _kind(rec)
        if kind == "dicom":
            dicoms.append((entry, outs[0], rec))
        else:
            others.append((kind, entry, outs))

    def check(item: tuple[SourceEntry, str, dict]) -> ItemFindings:
        entry, rel, rec = item
        return _check_dicom(src_tree, entry.rel, out_tree, rel, rec, config, ocr, entry.hashes[0])

    with ThreadPoolExecutor(max(1, threads)) as pool:
        for found in pool.map(check, dicoms):  # in source order, whatever finished first
            p.extend(found.problems)
            if found.study:
                studies[found.study[0]].add(found.study[1:])
            if found.patient:
                patients[found.patient[0]].add(found.patient[1])
            if found.sop:
                sop_uids.add(found.sop)
            references += found.references
            strict_texts |= found.strict_texts
            res.ocr_checked += found.ocr_checked
            res.ocr_available &= not found.ocr_unavailable
    for kind, entry, outs in others:
        if kind == "slide":
            _check_slide(src_tree, entry.rel, out_tree, _slide_files(outs, present), config, keys, res, entry.hashes[0])
        else:
            _check_bytes(out_tree, outs[0], name_parts, res)
    # items recorded for sources that are not there any more: not wrong, but not balanced
    stale = {h for h, r in records.items() if h not in matched}
    if stale:
        res.counts["recorded-not-in-source"] = len(stale)
    n_in = len(sources)
    accounted = sum(res.counts[s] for s in ("done", "quarantined", "failed", "dropped"))
    if accounted != n_in:
        p.append(f"counts do not balance: {n_in} item(s) in, {res.counts['done']} out + {res.counts['quarantined']} quarantined"
                 f" + {res.counts['failed']} failed + {res.counts['dropped']} dropped = {accounted}")
    _check_state(state, res)
    _check_studies(studies, patients, keys, p)
    for rel, ref in references:
        if ref not in sop_uids:
            p.append(f"{rel}: a Referenced SOP Instance UID resolves to no output of this job")
    needles = {t.encode() for t in strict_texts} | {n.encode() for n in name_parts}
    # a local DST's .phiscrub is a state folder even when this job kept its state elsewhere
    # (an earlier run's): scanned like one, and reported once rather than file by file
    _check_tree(out_tree, listing, expected, needles, p, keys, state_prefix=None if is_bucket(dst) else STATE,
                foreign_state=not state_inside)
    if not state_inside:
        state_tree = LocalTree(Path(state))
        _check_tree(state_tree, list(state_tree.walk()), expected, needles, p, keys, state_prefix="", shown=STATE_LABEL)
    return res


def _stem(name: str) -> str:
    return name.split(".", 1)[0] if not name.startswith(".") else name


def _outputs(rec: dict) -> list[str]:
    manifest = rec.get("manifest") or {}
    outs = [str(o) for o in manifest.get("outputs") or []] if isinstance(manifest, dict) else []
    return outs or ([rec["output"]] if rec.get("output") else [])


def _kind(rec: dict) -> str:
    m = rec.get("manifest") or {}
    if "levels" in m or "associated" in m:
        return "slide"
    if str(rec.get("output", "")).endswith(".dcm") or "sop_class" in m:
        return "dicom"
    return "file"


def _check_dicom(src_tree: Tree, src_rel: str, out_tree: Tree, rel: str, rec, config, ocr, tag) -> ItemFindings:
    """Re-read one DICOM output and its source: what it found, for the caller to merge (it
    runs in a worker thread, and touches nothing shared)."""
    from pydicom import dcmread

    from phiscrub.dicom.reader import read_instance
    from phiscrub.policy import annex_e

    found = ItemFindings()
    p = found.problems
    try:
        src = read_instance(src_tree.read(src_rel))
    except Exception:  # noqa: BLE001 - not DICOM any more, or a storage client's own error
        p.append(f"source {tag}: cannot be re-read to verify its output")
        return found
    iod = annex_e.iod_for_sop_class(src.get("SOPClassUID"))
    probe = collect_probe(src, config.policy, iod)
    found.strict_texts = {t for t in probe.texts if _identifying(t)}
    try:
        data = out_tree.read(rel)
    except Exception as e:  # noqa: BLE001 - gone or unreadable since it was listed
        p.append(f"{rel}: cannot be re-read ({type(e).__name__})")
        return found
    for reason in verify_output(data, rel, probe):
        p.append(f"{rel}: {reason}")
    try:
        out = dcmread(io.BytesIO(data), force=True)
    except Exception:  # noqa: BLE001 - an output that does not parse cannot be released
        p.append(f"{rel}: output does not parse as DICOM")
        return found
    for kw in text_field_leaks(out, probe):
        p.append(f"{rel}: text field {kw} holds a source identifying value")
    src_study, src_patient = str(src.get("StudyInstanceUID", "")), str(src.get("PatientID", ""))
    new_study, new_patient = str(out.get("StudyInstanceUID", "")), str(out.get("PatientID", ""))
    if src_study:
        found.study = (src_study, new_study, new_patient)
    if src_patient:
        found.patient = (src_patient, new_patient)
    found.sop = str(out.get("SOPInstanceUID", ""))
    for e in out.iterall():
        if e.tag == 0x00081155 and e.value:  # ReferencedSOPInstanceUID
            for v in e.value if isinstance(e.value, list) or type(e.value).__name__ == "MultiValue" else [e.value]:
                found.references.append((rel, str(v)))
    if not ocr or not _had_burned_in_text(src, rec):
        return found
    try:
        n = ocr_leaks(out, src, config)
    except ImportError:
        found.ocr_unavailable = True
        return found
    except Exception as e:  # noqa: BLE001 - a decode failure of an output is a finding
        p.append(f"{rel}: pixels could not be checked with OCR ({type(e).__name__})")
        return found
    found.ocr_checked = True
    if n:
        p.append(f"{rel}: OCR reads {n} identifying text region(s) in the output pixels")
    return found


def _had_burned_in_text(src, rec: dict) -> bool:
    if "PixelData" not in src:
        return False
    if str(src.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        return True
    boxes = ((rec.get("manifest") or {}).get("pixels") or {}).get("boxes") or rec.get("pixel_boxes") or []
    return bool(boxes)


def _identifying(text: str) -> bool:
    """Values worth looking for anywhere (names, IDs, long numbers), not short words that
    can occur by chance in a hash or a UID."""
    return len(text) >= 5 and not text.replace(".", "").isdigit() or len(text) >= 8 and text.isdigit()


def _slide_files(outs: list[str], present: set[str]) -> list[str]:
    """A slide's outputs with, for MIRAX, the files of its companion folder (NAME.mrxs beside
    NAME/), which the audit record does not list one by one; the slide file first."""
    files = list(dict.fromkeys(outs))
    for o in outs:
        if o.endswith(".mrxs"):
            folder = o[: -len(".mrxs")] + "/"
            files += sorted(r for r in present if r.startswith(folder) and r not in files)
    return files


def _check_slide(src_tree: Tree, src_rel: str, out_tree: Tree, outs: list[str], config, keys, res, tag) -> None:
    """Slide formats read files: a bucket's source and outputs (``outs``: all of the slide's
    files, a MIRAX slide being a file beside a folder) are streamed to a temporary folder
    for the check and removed after it."""
    from phiscrub.wsi import registry
    from phiscrub.wsi.registry import SlideJob

    rel = outs[0]
    try:
        with src_tree.local_files([src_rel], neutral=True) as (src_path,), out_tree.local_files(outs) as out_paths:
            fmt = registry.detect(src_path)
            if fmt is None:
                res.problems.append(f"{rel}: its source is no longer a slide phiscrub knows")
                return
            try:
                problems = fmt.verify(src_path, out_paths[0], SlideJob(keys, config))
            except Exception as e:  # noqa: BLE001 - a slide that cannot be re-read is a finding
                problems = [f"cannot be re-read ({type(e).__name__})"]
    except Exception as e:  # noqa: BLE001 - a download that fails is a finding, not a crash
        problems = [f"cannot be fetched to be re-read ({type(e).__name__}; source {tag})"]
    res.problems.extend(f"{rel}: {x}" for x in problems)


def _check_bytes(out_tree: Tree, rel: str, name_parts: set[str], res) -> None:
    """Annotation and other files: the output must not name the source (its file name)."""
    try:
        blob = out_tree.read(rel).lower()
    except Exception as e:  # noqa: BLE001 - gone or unreadable since it was listed
        res.problems.append(f"{rel}: cannot be re-read ({type(e).__name__})")
        return
    if any(_found(n.encode(), blob) for n in name_parts if n.encode() in blob):
        res.problems.append(f"{rel}: holds a source file or folder name")


def _check_state(state: Path, res: JobCheck) -> None:
    """The SQLite job state must agree with the audit on what is done."""
    import sqlite3

    db = state / "state.sqlite"
    if not db.exists():
        return
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = dict(con.execute("SELECT status, COUNT(*) FROM items GROUP BY status").fetchall())
        finally:
            con.close()
    except sqlite3.Error:
        return  # another state layout: the audit alone is checked
    if rows.get("done", 0) < res.counts["done"]:
        res.problems.append(f"job state holds {rows.get('done', 0)} done item(s), the audit {res.counts['done']}")


def _check_studies(studies, patients, keys: KeyRing, p: list[str]) -> None:
    for study, outs in sorted(studies.items()):
        h = keys.hash_hex("study:" + study)
        new_uids = {s for s, _ in outs}
        pats = {x for _, x in outs}
        if len(new_uids) > 1:
            p.append(f"source study {h}: its instances carry {len(new_uids)} different new Study Instance UIDs")
        if study in new_uids:
            p.append(f"source study {h}: the original Study Instance UID is still in the output")
        if len(pats) > 1:
            p.append(f"source study {h}: its instances carry {len(pats)} different patient pseudonyms")
    for pid, pseud in sorted(patients.items()):
        if len(pseud) > 1:
            p.append(f"source patient {keys.hash_hex('patient:' + pid)}: {len(pseud)} different pseudonyms")


def _check_tree(tree: Tree, listing: list[tuple[str, bool]], expected: set[str], needles: set[bytes], p: list[str],
                keys: KeyRing, *, state_prefix: str | None, shown: str = "", foreign_state: bool = False) -> None:
    """Every entry of a tree: written by the job (or a slide's companion), named from no
    source value, and for the state folder (paths under ``state_prefix``; '' for a tree
    that is the state folder), holding no source value at all. ``foreign_state``: that
    folder is not this job's (its state is elsewhere): said once, and still scanned."""
    companions = {PurePosixPath(e).with_suffix("") for e in expected if e.endswith(".mrxs")}
    if foreign_state and state_prefix and any(PurePosixPath(r).parts[:1] == (state_prefix,) for r, _ in listing):
        p.append(f"{shown}{state_prefix}: a state folder this job did not write (its state is in --state): "
                 "left from another run")
    for rel, is_dir in listing:
        path = PurePosixPath(rel)
        in_state = state_prefix is not None and (state_prefix == "" or path.parts[:1] == (state_prefix,))
        low = rel.lower().encode()
        name = shown + rel
        if any(n in low and _found(n, low) for n in needles):
            # the path itself is PHI: it is named by a keyed hash, never printed
            name = f"{shown}path {keys.hash_hex('path:' + rel)}"
            p.append(f"{name}: the path holds a source value or file name")
        if is_dir:
            continue
        if in_state:
            if path.name in _NOT_SCANNED:
                continue
            blob = tree.read(rel).lower()
            if path.name.endswith(".html"):  # embedded images are Base64: random letters, not text
                blob = re.sub(rb"data:[a-z/+]+;base64,[a-z0-9+/=]+", b"", blob)
            if any(n in blob and _found(n, blob) for n in needles):
                p.append(f"{name}: holds a source value or file name")
        elif path.name.startswith(".partial-"):
            p.append(f"{name}: a partial write was left behind")
        elif rel not in expected and not any(c in path.parents for c in companions):
            p.append(f"{name}: not an output this job recorded")
