"""`phiscrub verify SRC DST`: an independent re-read of a finished job, usable as a gate.

Why a second look when every output already passed the gate: the gate runs inside the
worker that made the output, one item at a time. This re-reads everything from storage
afterwards, item by item (header bytes, decoded fields, paths, and OCR of the pixels the
pixel policy would scan) and across items, where one item alone cannot tell: that a study
kept one new UID and one patient pseudonym, that every item is accounted for, that every
reference to an instance of the job points at that instance's output, that no file
appeared that the job did not write, and that nothing in the state folder or the file
names holds a source value.

A gate must not cry wolf, or it is switched off: each problem is one line, once; what is
not a problem is said once, as a note (references to instances outside the job, which
real studies hold all the time; duplicates of an instance, which have no output of their
own); a key that matches nothing is said in one line, not as every item missing.

Sources are matched to outputs through the audit log (keyed hashes of source URIs), so the
key is needed; every line is PHI-free (output paths are built from pseudonyms and new
UIDs; a source is named by its keyed hash; a finding names the attribute, never the value).

Source and destination are trees (trees.py): a local folder, or a gs:// / s3:// prefix read
from the bucket itself. A job whose destination is a bucket keeps its audit log and job
state in a local state folder (``--state``), which is scanned like DST/.phiscrub.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from phiscrub.keys import KeyRing
from phiscrub.pipeline.audit import read_records
from phiscrub.pipeline.discover import discover
from phiscrub.pipeline.probe import Needle
from phiscrub.pipeline.trees import LocalTree, Tree, is_bucket, open_tree
from phiscrub.pipeline.verify import (
    collect_probe,
    describe,
    ocr_leaks,
    scan_output,
    structure_reasons,
)
from phiscrub.pipeline.verify_state import NeedleIndex, SourceNames, state_file_holds
from phiscrub.policy.actions import Option
from phiscrub.policy.config import Config

STATE = ".phiscrub"
# Items re-read at once. A bucket's reads wait on the network (one after another, a million
# objects is days); parsing and the codecs hold the GIL and OCR runs under its engine's lock,
# so on a local folder the threads gain little. Slides stay one at a time: a bucket's slide
# is fetched to a temporary folder whole, source and output.
VERIFY_THREADS = 8
_NOT_SCANNED = {"broker.map"}  # ciphertext: it holds original IDs, encrypted, by design
STATE_LABEL = "[state] "  # how paths in a state folder outside DST are shown
# the reason prepass.py records for a copy whose SOP Instance UID another file holds with
# other content: quarantined by design, counted with the duplicates
CONFLICT_REASON = "duplicate SOP Instance UID, different content"
_STATUSES = ("done", "quarantined", "failed", "dropped", "duplicate")
_REFERENCED_SOP = 0x00081155


@dataclass
class JobCheck:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # information: said once, never a failure
    counts: Counter = field(default_factory=Counter)
    outputs: int = 0  # output files that exist and were re-read, each once
    ocr_checked: int = 0
    ocr_available: bool = True


@dataclass
class ItemFindings:
    """What re-reading one DICOM item found, merged into the job's check in source order
    (so the report does not depend on which thread finished first)."""

    problems: list[str] = field(default_factory=list)
    study: tuple[str, str, str] | None = None  # (source study, new study, new patient)
    patient: tuple[str, str] | None = None  # (source patient ID, new patient ID)
    src_sop: str = ""
    sop: str = ""  # the output's SOP Instance UID
    src_refs: set[str] = field(default_factory=set)  # Referenced SOP Instance UIDs of the source
    out_refs: set[str] = field(default_factory=set)  # ... and of the output
    needles: list[Needle] = field(default_factory=list)  # the source's values to look for in the state
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


def key_matches(state: Path, keys: KeyRing) -> bool | None:
    """Whether the audit log was signed with this key: its first record's MAC says so in
    one step. None for a log without MACs (then only the sources' hashes can tell)."""
    from phiscrub.pipeline.audit import _mac

    log = state / "audit.jsonl"
    try:
        with log.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("mac") and rec.get("hash"):
                    return _mac(keys, str(rec["hash"])) == rec["mac"]
    except OSError:
        return None
    return None


def _policies(state: Path) -> set[str]:
    """The policy hashes the job's runs recorded."""
    try:
        return {str(r["policy"]) for r in read_records(state / "audit.jsonl")
                if r.get("event") == "run-start" and r.get("policy")}
    except (OSError, ValueError):
        return set()


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
    signed = key_matches(Path(state), keys)
    if signed is False:
        p.append("the key does not match this job: its audit log was signed with another key"
                 " (give the job's --key-file or $PHISCRUB_KEY)")
        return res
    ran_with = _policies(Path(state))
    if ran_with and config.policy.digest() not in ran_with:
        res.notes.append("the config given is not the one this job ran with (its policy hash differs):"
                         " outputs are judged by the config given; pass the job's --config")
    src_tree, sources = list_sources(src, keys)
    matched_any = any(h in records for e in sources for h in e.hashes)
    if sources and records and not matched_any:
        if signed is None:
            p.append(f"the key does not match this job: none of its {len(sources)} source(s) has a record under this key")
        else:
            p.append(f"SRC is not this job's input: none of its {len(sources)} source(s) has a record in the job")
        return res
    listing = [(rel, is_dir) for rel, is_dir in out_tree.walk()]
    present = {rel for rel, is_dir in listing if not is_dir}
    expected: set[str] = set()  # relative output paths the job says it wrote
    owners: dict[str, int] = Counter()  # output path -> done items that name it
    matched: set[str] = set()
    names = SourceNames(e.rel for e in sources)
    dicoms: list[tuple[SourceEntry, str, dict]] = []
    undone: list[SourceEntry] = []  # read for their SOP Instance UID and their values
    others: list[tuple[str, SourceEntry, list[str]]] = []
    conflicts = 0
    for entry in sources:
        rec = next((records[h] for h in entry.hashes if h in records), None)
        if rec is None:
            p.append(f"source {entry.hashes[0]}: no record in the job (never processed)")
            continue
        matched.add(rec["item"])
        status = rec.get("status", "")
        res.counts[status] += 1
        if status != "done":
            conflicts += status == "quarantined" and rec.get("reason") == CONFLICT_REASON
            undone.append(entry)
            continue
        outs = _outputs(rec)
        expected |= set(outs)
        for rel in outs:
            owners[rel] += 1
            if rel not in present:
                p.append(f"{rel}: recorded as done but missing")
        if not outs or outs[0] not in present:
            continue
        kind = _kind(rec)
        if kind == "dicom":
            dicoms.append((entry, outs[0], rec))
        else:
            others.append((kind, entry, outs))
    for rel, n in sorted(owners.items()):
        if n > 1:
            p.append(f"{rel}: recorded as the output of {n} items (one output overwrote another)")

    def check(item: tuple[SourceEntry, str, dict]) -> ItemFindings:
        entry, rel, rec = item
        return _check_dicom(src_tree, entry.rel, out_tree, rel, rec, config, ocr, entry.hashes[0])

    def light(entry: SourceEntry) -> ItemFindings:
        return _read_undone(src_tree, entry.rel, config)

    studies: dict[str, set[tuple[str, str]]] = defaultdict(set)  # source study -> {(new study, patient)}
    patients: dict[str, set[str]] = defaultdict(set)  # source patient id -> {pseudonym}
    state_needles: dict[tuple[str, str], Needle] = {}
    checked: list[tuple[str, ItemFindings]] = []
    reread: set[str] = set()
    with ThreadPoolExecutor(max(1, threads)) as pool:
        for (_, rel, _), found in zip(dicoms, pool.map(check, dicoms), strict=True):  # in source order
            p.extend(found.problems)
            if found.study:
                studies[found.study[0]].add(found.study[1:])
            if found.patient:
                patients[found.patient[0]].add(found.patient[1])
            for n in found.needles:
                state_needles.setdefault((n.kind, n.text), n)
            res.ocr_checked += found.ocr_checked
            res.ocr_available &= not found.ocr_unavailable
            checked.append((rel, found))
            reread.add(rel)
        other_sops: set[str] = set()
        for found in pool.map(light, undone):
            if found.src_sop:
                other_sops.add(found.src_sop)
            for n in found.needles:
                state_needles.setdefault((n.kind, n.text), n)
    for kind, entry, outs in others:
        if kind == "slide":
            _check_slide(src_tree, entry.rel, out_tree, _slide_files(outs, present), config, keys, res, entry.hashes[0])
        else:
            _check_bytes(out_tree, outs[0], names, res)
        reread.add(outs[0])
    res.outputs = len(reread)
    # items recorded for sources that are not there any more: not wrong, but not balanced
    stale = {h for h, r in records.items() if h not in matched}
    if stale:
        res.counts["recorded-not-in-source"] = len(stale)
    n_in = len(sources)
    accounted = sum(res.counts[s] for s in _STATUSES)
    if accounted != n_in:
        p.append(f"counts do not balance: {n_in} item(s) in, {res.counts['done']} out + {res.counts['quarantined']} quarantined"
                 f" + {res.counts['failed']} failed + {res.counts['dropped']} dropped"
                 f" + {res.counts['duplicate']} duplicate = {accounted}")
    if res.counts["duplicate"] or conflicts:
        res.notes.append(f"duplicates: {res.counts['duplicate']} identical copy(ies) of an instance (no output of their"
                         f" own), {conflicts} copy(ies) with other content quarantined")
    _check_state(state, res)
    _check_studies(studies, patients, keys, p)
    _check_references(checked, other_sops, config, keys, res)
    index = NeedleIndex(state_needles.values())
    # a local DST's .phiscrub is a state folder even when this job kept its state elsewhere
    # (an earlier run's): scanned like one, and reported once rather than file by file
    _check_tree(out_tree, listing, expected, index, names, p, keys,
                state_prefix=None if is_bucket(dst) else STATE, foreign_state=not state_inside)
    if not state_inside:
        state_tree = LocalTree(Path(state))
        _check_tree(state_tree, list(state_tree.walk()), expected, index, names, p, keys, state_prefix="",
                    shown=STATE_LABEL)
    res.problems = list(dict.fromkeys(p))  # each problem once
    return res


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


def read_source(data: bytes):
    """The source as the runner read it; one the reader now refuses (a stricter check than
    when the job ran) is still read, leniently, so that its output is checked against it."""
    from pydicom import dcmread

    from phiscrub.dicom.reader import read_instance
    from phiscrub.errors import PhiscrubError

    try:
        return read_instance(data)
    except PhiscrubError:
        from phiscrub.dicom.un_vr import resolve_un

        ds = dcmread(io.BytesIO(data), force=True)
        resolve_un(ds)
        return ds


def _check_dicom(src_tree: Tree, src_rel: str, out_tree: Tree, rel: str, rec, config, ocr, tag) -> ItemFindings:
    """Re-read one DICOM output and its source: what it found, for the caller to merge (it
    runs in a worker thread, and touches nothing shared)."""
    from pydicom import dcmread

    from phiscrub.policy import annex_e

    found = ItemFindings()
    p = found.problems
    try:
        src = read_source(src_tree.read(src_rel))
    except Exception:  # noqa: BLE001 - not DICOM any more, or a storage client's own error
        p.append(f"source {tag}: cannot be re-read to verify its output")
        return found
    iod = annex_e.iod_for_sop_class(src.get("SOPClassUID"))
    probe = collect_probe(src, config.policy, iod)
    found.needles = probe.state_needles()
    try:
        data = out_tree.read(rel)
    except Exception as e:  # noqa: BLE001 - gone or unreadable since it was listed
        p.append(f"{rel}: cannot be re-read ({type(e).__name__})")
        return found
    try:
        out = dcmread(io.BytesIO(data), force=True)
        _ = out.keys()
    except Exception:  # noqa: BLE001 - an output that does not parse cannot be released
        out = None
    for f in scan_output(data, rel, probe, out, fields=True):
        p.append(f"{rel}: {describe(f)}")
    for reason in structure_reasons(data):
        p.append(f"{rel}: {reason}")
    if out is None:
        p.append(f"{rel}: output does not parse as DICOM")
        return found
    src_study, src_patient = str(src.get("StudyInstanceUID", "")), str(src.get("PatientID", ""))
    new_study, new_patient = str(out.get("StudyInstanceUID", "")), str(out.get("PatientID", ""))
    if src_study:
        found.study = (src_study, new_study, new_patient)
    if src_patient:
        found.patient = (src_patient, new_patient)
    found.src_sop = str(src.get("SOPInstanceUID", ""))
    found.sop = str(out.get("SOPInstanceUID", ""))
    found.src_refs = _references(src)
    found.out_refs = _references(out)
    if not ocr or not would_scan_pixels(src, rec, config):
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


def _read_undone(src_tree: Tree, src_rel: str, config) -> ItemFindings:
    """A source with no output (quarantined, failed, a duplicate): its SOP Instance UID, for
    the references that point at it, and its values, which the state must not hold."""
    from pydicom import dcmread

    from phiscrub.dicom.un_vr import resolve_un
    from phiscrub.policy import annex_e

    found = ItemFindings()
    try:  # the header only, and only of what looks like DICOM: a quarantined slide is gigabytes
        with src_tree.open(src_rel) as fh:
            head = fh.read(132)
            if head[128:132] != b"DICM" and head[:2] not in (b"\x02\x00", b"\x08\x00"):
                return found
            fh.seek(0)
            src = dcmread(fh, force=True, stop_before_pixels=True, defer_size="1 MB")
            _ = src.keys()
        resolve_un(src)
    except Exception:  # noqa: BLE001 - a source too damaged to read holds nothing to look for
        return found
    found.src_sop = str(src.get("SOPInstanceUID", "") or "")
    try:
        found.needles = collect_probe(src, config.policy, annex_e.iod_for_sop_class(src.get("SOPClassUID"))).state_needles()
    except Exception:  # noqa: BLE001 - damaged values: what could be read is enough
        pass
    return found


def _references(ds) -> set[str]:
    out = set()
    try:
        for e in ds.iterall():
            if e.tag == _REFERENCED_SOP and e.value:
                vals = e.value if isinstance(e.value, (list, tuple)) or type(e.value).__name__ == "MultiValue" else [e.value]
                out.update(str(v) for v in vals if v)
    except Exception:  # noqa: BLE001 - a damaged sequence holds no reference that can be read
        pass
    return out


def would_scan_pixels(src, rec: dict, config) -> bool:
    """Whether an output's pixels are read with OCR: every image the pixel stage scans under
    clean_pixel_data (pixels.redact.effective_mode: the modalities, secondary captures, screen
    saves, localizers and derived images known to carry text, and static rules), when the job cleaned pixels; and
    whatever the job did, an image whose source declares burned-in text, or where the
    pixel stage recorded boxes."""
    if "PixelData" not in src:
        return False
    if str(src.get("BurnedInAnnotation", "") or "").strip().upper() == "YES":
        return True
    pixels = (rec.get("manifest") or {}).get("pixels") or {}
    if pixels.get("boxes") or rec.get("pixel_boxes") or pixels.get("screen") == "text":
        return True
    if not config.policy.has(Option.CLEAN_PIXEL_DATA):
        return False
    from phiscrub.pixels import effective_mode
    from phiscrub.pixels.rules import matching_boxes

    if effective_mode(src, config.pixels) != "none":
        return True
    try:
        return bool(matching_boxes(src, config.pixels.rules))
    except Exception:  # noqa: BLE001 - a rule that cannot be judged on this source: read it
        return True


def _check_references(checked: list[tuple[str, ItemFindings]], other_sops: set[str], config, keys: KeyRing,
                      res: JobCheck) -> None:
    """A reference is a problem only where its target was in the job: without an output, or
    with an output under another UID than the reference carries. One that cites no
    reference of its source and no output is a problem too (made up, or remapped wrong).
    References outside the job are counted once."""
    retain = config.policy.has(Option.RETAIN_UIDS) or config.policy.profile == "keep_all"
    out_of = {f.src_sop: f.sop for _, f in checked if f.src_sop}
    outputs = set(out_of.values())
    outside: set[str] = set()
    n_outside = 0
    for rel, f in checked:
        expect = {(s if retain else keys.uid(s)): s for s in f.src_refs}
        for o in sorted(f.out_refs):
            s = expect.get(o)
            if s is None:
                if o not in outputs:
                    res.problems.append(f"{rel}: a Referenced SOP Instance UID resolves to no output of this job"
                                        " and to no reference of its source")
            elif s in out_of:
                if out_of[s] != o:
                    res.problems.append(f"{rel}: a Referenced SOP Instance UID resolves to no output of this job:"
                                        " its target's output carries another UID")
            elif s in other_sops:
                res.problems.append(f"{rel}: a Referenced SOP Instance UID points at an instance of this job"
                                    " that has no output")
            else:
                outside.add(s)
                n_outside += 1
    if outside:
        res.notes.append(f"{n_outside} reference(s) to {len(outside)} instance(s) outside this job (not checked)")


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


def _check_bytes(out_tree: Tree, rel: str, names: SourceNames, res) -> None:
    """Annotation and other files: the output must not name the source (its file name)."""
    try:
        blob = out_tree.read(rel).lower()
    except Exception as e:  # noqa: BLE001 - gone or unreadable since it was listed
        res.problems.append(f"{rel}: cannot be re-read ({type(e).__name__})")
        return
    if names and names.in_text(blob.decode("utf-8", "replace")):
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


def _check_tree(tree: Tree, listing: list[tuple[str, bool]], expected: set[str], needles: NeedleIndex,
                names: SourceNames, p: list[str], keys: KeyRing, *, state_prefix: str | None, shown: str = "",
                foreign_state: bool = False) -> None:
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
        low = rel.lower()
        name = shown + rel
        if needles.find(low) is not None or (names and names.in_path(low)):
            # the path itself is PHI: it is named by a keyed hash, never printed
            name = f"{shown}path {keys.hash_hex('path:' + rel)}"
            p.append(f"{name}: the path holds a source value or file name")
        if is_dir:
            continue
        if in_state:
            if path.name in _NOT_SCANNED:
                continue
            local = getattr(tree, "root", None)
            file_path = Path(local) / rel if local is not None else Path(rel)
            data = b"" if path.name.endswith(".sqlite") else tree.read(rel)
            if state_file_holds(file_path, data, needles, names):
                p.append(f"{name}: holds a source value or file name")
        elif path.name.startswith(".partial-"):
            p.append(f"{name}: a partial write was left behind")
        elif rel not in expected and not any(c in path.parents for c in companions):
            p.append(f"{name}: not an output this job recorded")
