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
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from phiscrub.keys import KeyRing
from phiscrub.pipeline.audit import read_records
from phiscrub.pipeline.discover import discover
from phiscrub.pipeline.verify import (
    _found,
    collect_probe,
    ocr_leaks,
    text_field_leaks,
    verify_output,
)
from phiscrub.policy.config import Config

STATE = ".phiscrub"
_NOT_SCANNED = {"broker.map"}  # ciphertext: it holds original IDs, encrypted, by design
MIN_NAME_PART = 6


@dataclass
class JobCheck:
    problems: list[str] = field(default_factory=list)
    counts: Counter = field(default_factory=Counter)
    outputs: int = 0
    ocr_checked: int = 0
    ocr_available: bool = True


def source_hashes(keys: KeyRing, path: Path) -> list[str]:
    """The keyed hashes a runner may have recorded for a local source (its path, or its
    file URI), so the check does not depend on which one a runner version uses."""
    ap = os.path.abspath(path)
    forms = ("path:" + ap, "path:" + Path(ap).as_uri(), "uri:" + ap, "uri:" + Path(ap).as_uri())
    return [keys.hash_hex(f) for f in forms]


def _final_records(dst: Path) -> tuple[dict[str, dict], bool]:
    log = dst / STATE / "audit.jsonl"
    if not log.exists():
        return {}, False
    last: dict[str, dict] = {}
    for rec in read_records(log):
        if rec.get("event") == "item" and rec.get("item"):
            last[rec["item"]] = rec  # a rerun's record supersedes an earlier attempt
    return last, True


def verify_job(src: Path, dst: Path, config: Config, keys: KeyRing, *, ocr: bool = True) -> JobCheck:
    res = JobCheck()
    p = res.problems
    records, have_log = _final_records(dst)
    if not have_log:
        p.append("no audit log under the destination: not a phiscrub job, or its state folder is missing")
        return res
    sources = list(discover(src))
    expected: set[str] = set()  # relative output paths the job says it wrote
    name_parts: set[str] = set()
    strict_texts: set[str] = set()
    studies: dict[str, set[tuple[str, str]]] = defaultdict(set)  # source study -> {(new study, patient)}
    patients: dict[str, set[str]] = defaultdict(set)  # source patient id -> {pseudonym}
    sop_uids: set[str] = set()
    references: list[tuple[str, str]] = []  # (output relpath, referenced SOP instance UID)
    matched: set[str] = set()
    root = src if src.is_dir() else src.parent
    for path in sources:
        rel_src = path.relative_to(root) if path.is_relative_to(root) else Path(path.name)
        name_parts |= {_stem(x).lower() for x in rel_src.parts if len(_stem(x)) >= MIN_NAME_PART}
        hashes = source_hashes(keys, path)
        rec = next((records[h] for h in hashes if h in records), None)
        tag = hashes[0]
        if rec is None:
            p.append(f"source {tag}: no record in the job (never processed)")
            continue
        matched.add(rec["item"])
        status = rec.get("status", "")
        res.counts[status] += 1
        if status != "done":
            continue
        outs = _outputs(rec)
        expected |= set(outs)
        for rel in outs:
            if not (dst / rel).exists():
                p.append(f"{rel}: recorded as done but missing")
        if not outs or not (dst / outs[0]).is_file():
            continue
        out_path = dst / outs[0]
        res.outputs += len(outs)
        kind = _kind(rec)
        if kind == "dicom":
            _check_dicom(path, out_path, outs[0], rec, config, ocr, res, studies, patients, sop_uids, references,
                         strict_texts, tag)
        elif kind == "slide":
            _check_slide(path, out_path, outs[0], config, keys, res)
        else:
            _check_bytes(out_path, outs[0], name_parts, res)
    # items recorded for sources that are not there any more: not wrong, but not balanced
    stale = {h for h, r in records.items() if h not in matched}
    if stale:
        res.counts["recorded-not-in-source"] = len(stale)
    n_in = len(sources)
    accounted = sum(res.counts[s] for s in ("done", "quarantined", "failed", "dropped"))
    if accounted != n_in:
        p.append(f"counts do not balance: {n_in} item(s) in, {res.counts['done']} out + {res.counts['quarantined']} quarantined"
                 f" + {res.counts['failed']} failed + {res.counts['dropped']} dropped = {accounted}")
    _check_state(dst, res)
    _check_studies(studies, patients, keys, p)
    for rel, ref in references:
        if ref not in sop_uids:
            p.append(f"{rel}: a Referenced SOP Instance UID resolves to no output of this job")
    _check_tree(dst, expected, name_parts, strict_texts, p, keys)
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


def _check_dicom(src_path, out_path, rel, rec, config, ocr, res, studies, patients, sop_uids, references, strict_texts, tag) -> None:
    from pydicom import dcmread

    from phiscrub.dicom.reader import read_instance
    from phiscrub.errors import PhiscrubError
    from phiscrub.policy import annex_e

    p = res.problems
    try:
        src = read_instance(Path(src_path).read_bytes())
    except (OSError, PhiscrubError):
        p.append(f"source {tag}: cannot be re-read to verify its output")
        return
    iod = annex_e.iod_for_sop_class(src.get("SOPClassUID"))
    probe = collect_probe(src, config.policy, iod)
    strict_texts |= {t for t in probe.texts if _identifying(t)}
    data = out_path.read_bytes()
    for reason in verify_output(data, rel, probe):
        p.append(f"{rel}: {reason}")
    try:
        out = dcmread(out_path, force=True)
    except Exception:  # noqa: BLE001 - an output that does not parse cannot be released
        p.append(f"{rel}: output does not parse as DICOM")
        return
    for kw in text_field_leaks(out, probe):
        p.append(f"{rel}: text field {kw} holds a source identifying value")
    src_study, src_patient = str(src.get("StudyInstanceUID", "")), str(src.get("PatientID", ""))
    new_study, new_patient = str(out.get("StudyInstanceUID", "")), str(out.get("PatientID", ""))
    if src_study:
        studies[src_study].add((new_study, new_patient))
    if src_patient:
        patients[src_patient].add(new_patient)
    sop = str(out.get("SOPInstanceUID", ""))
    if sop:
        sop_uids.add(sop)
    for e in out.iterall():
        if e.tag == 0x00081155 and e.value:  # ReferencedSOPInstanceUID
            for v in e.value if isinstance(e.value, list) or type(e.value).__name__ == "MultiValue" else [e.value]:
                references.append((rel, str(v)))
    if not ocr or not _had_burned_in_text(src, rec):
        return
    try:
        n = ocr_leaks(out, src, config)
    except ImportError:
        res.ocr_available = False
        return
    except Exception as e:  # noqa: BLE001 - a decode failure of an output is a finding
        p.append(f"{rel}: pixels could not be checked with OCR ({type(e).__name__})")
        return
    res.ocr_checked += 1
    if n:
        p.append(f"{rel}: OCR reads {n} identifying text region(s) in the output pixels")


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


def _check_slide(src_path, out_path, rel, config, keys, res) -> None:
    from phiscrub.wsi import registry
    from phiscrub.wsi.registry import SlideJob

    fmt = registry.detect(Path(src_path))
    if fmt is None:
        res.problems.append(f"{rel}: its source is no longer a slide phiscrub knows")
        return
    try:
        problems = fmt.verify(Path(src_path), out_path, SlideJob(keys, config))
    except Exception as e:  # noqa: BLE001 - a slide that cannot be re-read is a finding
        problems = [f"cannot be re-read ({type(e).__name__})"]
    res.problems.extend(f"{rel}: {x}" for x in problems)


def _check_bytes(out_path: Path, rel: str, name_parts: set[str], res) -> None:
    """Annotation and other files: the output must not name the source (its file name)."""
    blob = out_path.read_bytes().lower()
    if any(_found(n.encode(), blob) for n in name_parts if n.encode() in blob):
        res.problems.append(f"{rel}: holds a source file or folder name")


def _check_state(dst: Path, res: JobCheck) -> None:
    """The SQLite job state must agree with the audit on what is done."""
    import sqlite3

    db = dst / STATE / "state.sqlite"
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


def _check_tree(dst: Path, expected: set[str], name_parts: set[str], strict: set[str], p: list[str], keys: KeyRing) -> None:
    """Every file under DST: written by the job (or a slide's companion), named from no
    source value, and for the state folder, holding no source value at all."""
    companions = {Path(e).with_suffix("") for e in expected if e.endswith(".mrxs")}
    needles = {t.encode() for t in strict} | {n.encode() for n in name_parts}
    for root, dirs, files in os.walk(dst):
        dirs.sort()
        rel_root = Path(root).relative_to(dst)
        in_state = rel_root.parts[:1] == (STATE,)
        shown: dict[str, str] = {}
        for name in sorted(files) + sorted(dirs):
            rel = rel_root / name
            low = str(rel).lower().encode()
            shown[name] = str(rel)
            if any(n in low and _found(n, low) for n in needles):
                # the path itself is PHI: it is named by a keyed hash, never printed
                shown[name] = f"path {keys.hash_hex('path:' + str(rel))}"
                p.append(f"{shown[name]}: the path holds a source value or file name")
        if in_state:
            for name in sorted(files):
                if name in _NOT_SCANNED:
                    continue
                blob = (Path(root) / name).read_bytes().lower()
                if name.endswith(".html"):  # embedded images are Base64: random letters, not text
                    blob = re.sub(rb"data:[a-z/+]+;base64,[a-z0-9+/=]+", b"", blob)
                if any(n in blob and _found(n, blob) for n in needles):
                    p.append(f"{shown[name]}: holds a source value or file name")
            continue
        for name in sorted(files):
            rel = rel_root / name
            if name.startswith(".partial-"):
                p.append(f"{shown[name]}: a partial write was left behind")
            elif str(rel) not in expected and not any(c in rel.parents for c in companions):
                p.append(f"{shown[name]}: not an output this job recorded")
