"""One item, start to finish, in whichever process runs it: read from the source, route by
content (slide, annotation file, DICOM), transform, verify, write to the sink.

Workers get the job and item URIs, never file bytes from the parent: each opens the source
and the sink by URI (storage.py) and reads and writes storage itself, so a Dask worker on
another machine does exactly what a local pool worker does. Storage operations are retried
when the error is transient (retry.py); the attempts are counted into the result. Results
that travel back are PHI-free (status, reason category, output path, counts); ``source`` is
only shown on the operator's console.

The engines that drive process_item over many items are in engines.py; ``run`` picks one.
"""

from __future__ import annotations

import contextvars
import io
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from phiscrub.dicom.reader import DICOMDIR_CLASS, input_error, read_instance
from phiscrub.errors import DroppedByPolicy, PhiscrubError, TransientError, UnsupportedInput
from phiscrub.keys import KeyRing
from phiscrub.pipeline import broker
from phiscrub.pipeline.retry import Attempts, RetryPolicy, is_transient
from phiscrub.pipeline.sinks import atomic_write
from phiscrub.pipeline.storage import Item, load_plugins, open_sink, open_source
from phiscrub.pipeline.verify import collect_probe, verify_output
from phiscrub.policy import annex_e
from phiscrub.policy.config import Config
from phiscrub.transform import transform_dataset

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_HEAD = 1 << 16
# A DICOMDIR is a media index, not an instance: it lists the source's patients, studies and
# file paths, none of which may reach the output, and it would point at files that are not
# there under their new names. Exporting tools put one on every CD, so it is dropped (a
# note, not a failure) instead of failing every run made from such a disc.
MEDIA_INDEX = "media-index"
MEDIA_INDEX_NOTE = "DICOMDIR media index dropped: it indexes source paths and names; the output tree gets none"
_DIRECTORY_RECORDS = 0x00041220  # Directory Record Sequence: a DICOMDIR's body


@dataclass(frozen=True)
class Job:
    config: Config
    keys: KeyRing
    policy_hash: str
    dst: Path | str  # a folder, or any sink URI (gs://, s3://, dicomweb+https://, ...)
    quarantine: Path | None = None
    durable: bool = False  # fsync every file (else batched: see sinks)
    in_place: bool = False  # slides: rewrite the source (journalled) instead of copying it
    src: str = ""  # the source URI workers open (empty: items are local paths)
    studies: frozenset[str] | None = None  # only items of these StudyInstanceUIDs
    plugins: tuple[str, ...] = ()  # modules that register extra schemes, imported by every worker
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    broker: bool = False  # honest broker on: DICOM results carry (kind, original, pseudonym) pairs


@dataclass
class ItemResult:
    source: str  # only ever shown on the console, never written under dst
    source_hash: str
    size: int
    status: str  # done | dropped (by policy; a DICOMDIR) | failed | quarantined | excluded (not in the selected studies)
    reason: str = ""
    category: str = ""
    relpath: str = ""
    manifest: dict | None = None
    attempts: int = 1
    seconds: float = 0.0
    broker: list | None = None  # honest-broker pairs: only ever into the encrypted map, never audited or shown


_JOB: Job | None = None
_OPEN: dict[tuple[int, str, str], object] = {}


def _init(job: Job | None = None, ocr_threads: int = 0, parent: int = 0) -> None:
    global _JOB
    _JOB = job
    warnings.simplefilter("ignore")
    if ocr_threads:  # share the cores between workers instead of oversubscribing them
        os.environ.setdefault("PHISCRUB_OCR_THREADS", str(ocr_threads))
    if parent:
        _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    """A pool worker must not outlive a killed CLI (kill -9 gives the parent no chance to
    stop it): it would go on writing under DST while the operator reruns the job."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def _cached(kind: str, uri: str, job: Job):
    """One source and one sink per process and URI (connections are reused across items)."""
    k = (os.getpid(), kind, uri)
    obj = _OPEN.get(k)
    if obj is None:
        load_plugins(job.plugins)
        obj = open_source(uri) if kind == "src" else open_sink(uri, durable=job.durable)
        _OPEN[k] = obj
    return obj


def process_path(path: str, job: Job | None = None) -> ItemResult:
    """A local file as an item (kept for callers that hold paths)."""
    try:
        st = os.stat(path)
        item = Item(os.path.abspath(path), st.st_size, str(st.st_mtime_ns))
    except OSError:
        item = Item(os.path.abspath(path), 0, "")
    return process_item(item, job)


@dataclass(frozen=True)
class Task:
    """An item with what the job's pre-pass decided for it (prepass.Directive: its role
    among copies of one SOP Instance UID, and its study's identifying values)."""

    item: Item
    directive: object = None


# the directive of the item this thread is processing (the service runs items in threads)
_DIRECTIVE: contextvars.ContextVar = contextvars.ContextVar("phiscrub_directive", default=None)
_MEMORY = None  # prepass.StudyMemory of this process, for items that come without a pre-pass


def process_item(item: Item | Task, job: Job | None = None) -> ItemResult:
    job = job or _JOB
    assert job is not None
    directive = None
    if isinstance(item, Task):
        item, directive = item.item, item.directive
    if directive is not None and directive.role == "duplicate":
        from phiscrub.pipeline.prepass import DUPLICATE_REASON

        # another file holds the same dataset and gives the output: nothing to read or write
        return ItemResult(item.uri, job.keys.hash_hex("path:" + item.uri), item.size, "duplicate",
                          DUPLICATE_REASON, "duplicate")
    t0 = time.perf_counter()
    token = _DIRECTIVE.set(directive)
    try:
        res = _process(item, job)
    finally:
        _DIRECTIVE.reset(token)
    res.seconds = round(time.perf_counter() - t0, 4)
    return res


def _study_terms(src, job: Job):
    """The values the instance's free text is cleaned with: its own, plus those of its study
    and patient (from the job's pre-pass, or else from what this process has seen)."""
    from phiscrub.dicom import identity
    from phiscrub.pipeline import prepass
    from phiscrub.transform import needs_terms

    global _MEMORY
    if not needs_terms(job.config):
        return None
    directive = _DIRECTIVE.get()
    if directive is not None and directive.terms is not None:
        # the pre-pass read this instance's header as read_instance does and merged its
        # values into its study's: collecting them again would add nothing. (A file changed
        # between the passes is caught by the release check, which probes this very read.)
        return directive.terms
    own = identity.collect_terms(src)
    if directive is not None:
        return own
    if _MEMORY is None:
        _MEMORY = prepass.StudyMemory()
    study = str(src.get("StudyInstanceUID", "") or "").strip()
    return _MEMORY.see(study, identity.patient_identity(src), own)


def _process(item: Item, job: Job) -> ItemResult:
    src_hash = job.keys.hash_hex("path:" + item.uri)
    att = Attempts(job.retry)

    def result(status: str, reason: str = "", category: str = "", **kw) -> ItemResult:
        return ItemResult(item.uri, src_hash, item.size, status, reason, category, attempts=att.total, **kw)

    try:
        source = _cached("src", job.src, job) if job.src else None
        sink = _cached("dst", str(job.dst), job)
    except PhiscrubError as e:
        return result("failed", str(e), e.reason)
    local = source.local_path(item) if source is not None else item.uri
    try:
        if job.studies is not None and not _selected(item, source, local, job, att):
            return result("excluded", "not in the selected studies", "selection")
        if local is not None:
            routed = _other_kind(Path(local), item, job, sink, src_hash, att)
            if routed is not None:
                return routed
            data = att.call(lambda: Path(local).read_bytes())
        else:
            head = att.call(lambda: _head(source, item))
            if head[:4] in _TIFF_MAGIC and head[128:132] != b"DICM":  # (a DICOM preamble may be a TIFF header)
                return _remote_slide(item, job, source, sink, src_hash, att)
            data = att.call(lambda: source.read(item))
    except OSError as e:
        return _storage_failure(e, result, att)
    except Exception as e:  # noqa: BLE001 - a client's own error types (HTTP, botocore)
        if is_transient(e):
            return result("failed", _gave_up(att, type(e).__name__), "transient")
        return result("quarantined", f"cannot read ({type(e).__name__})", "io")
    if local is None:
        annotation = _annotation(item, data, job, sink, src_hash, att)
        if annotation is not None:
            return annotation
    return _dicom(item, data, job, sink, src_hash, att)


def _gave_up(att: Attempts, why: str) -> str:
    """The reason of an item whose storage errors outlasted the retries (a rerun tries again)."""
    return f"storage unavailable after {att.total} attempt(s) ({why})"


def _storage_failure(e: OSError, result, att: Attempts) -> ItemResult:
    why = e.strerror or type(e).__name__
    if is_transient(e):  # tried as often as the policy allows: a rerun tries again
        return result("failed", _gave_up(att, why), "transient")
    return result("quarantined", f"cannot read ({why})", "io")  # permanent: at once, with the reason


def _head(source, item: Item) -> bytes:
    head = getattr(source, "head", None)
    return head(item, _HEAD) if head is not None else source.read(item)[:_HEAD]


def _selected(item: Item, source, local: str | None, job: Job, att: Attempts) -> bool:
    """Study selection from the cheapest header read: the source's own knowledge, else the
    DICOM header up to the StudyInstanceUID (items that are not DICOM belong to no study)."""
    assert job.studies is not None
    if item.study:
        return item.study in job.studies
    from phiscrub.pipeline.select import study_uid

    if local is not None:
        uid = att.call(lambda: study_uid(local))
    else:
        opener = getattr(source, "open", None)
        uid = att.call(lambda: study_uid(opener(item) if opener else io.BytesIO(source.read(item))))
    return uid is not None and uid in job.studies


def _put(sink, relpath: str, data: bytes, check: Callable[[bytes], None] | None, att: Attempts) -> str:
    checked = getattr(sink, "write_checked", None)
    if checked is not None:
        return att.call(lambda: checked(relpath, data, check))
    if check is not None:
        check(data)
    return att.call(lambda: sink.write(relpath, data))


def _dicom(item: Item, data: bytes, job: Job, sink, src_hash: str, att: Attempts) -> ItemResult:
    path = item.uri

    def result(status: str, reason: str = "", category: str = "", **kw) -> ItemResult:
        return ItemResult(path, src_hash, len(data), status, reason, category, attempts=att.total, **kw)

    try:
        src = read_instance(data)
        directive = _DIRECTIVE.get()
        if directive is not None and directive.role == "conflict":
            from phiscrub.pipeline.prepass import CONFLICT_REASON

            _quarantine_copy(data, job, src_hash)
            return result("quarantined", CONFLICT_REASON, "duplicate")
        terms = _study_terms(src, job)
        probe = _probe(src, job)  # before the transform changes the dataset in place
        originals = broker.capture(src) if job.broker else None
        out = transform_dataset(src, job.config, job.keys, job.policy_hash, terms=terms)

        def check(written: bytes) -> None:  # the verifier reads what storage holds where it can
            reasons = verify_output(written, out.relpath, probe)
            if reasons:
                raise _Quarantine("; ".join(reasons))

        _put(sink, out.relpath, out.data, check, att)
        # the transform rewrote ``src`` in place: it now holds the output's pseudonyms
        pairs = broker.pairs(originals, src) if originals is not None else None
        return result("done", relpath=out.relpath, manifest=out.manifest, broker=pairs)
    except _Quarantine as q:
        _quarantine_copy(data, job, src_hash)
        return result("quarantined", str(q), "verification")
    except DroppedByPolicy as e:  # not a failure: nothing is written and no copy is kept
        return result("dropped", str(e), e.reason)
    except TransientError as e:  # tried as often as the policy allows: failed, not unsafe; a rerun tries again
        return result("failed", _gave_up(att, str(e)), "transient")
    except PhiscrubError as e:
        if isinstance(e, UnsupportedInput) and is_media_index(data):
            return result("dropped", MEDIA_INDEX_NOTE, MEDIA_INDEX)  # no copy kept: nothing failed
        _quarantine_copy(data, job, src_hash)
        return result("quarantined", str(e), e.reason)
    except OSError as e:
        if (damaged := _damaged(e, data, job, src_hash, result)) is not None:
            return damaged
        if is_transient(e):
            return result("failed", _gave_up(att, e.strerror or type(e).__name__), "transient")
        return result("failed", f"cannot write ({e.strerror or type(e).__name__})", "io")
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the run
        if (damaged := _damaged(e, data, job, src_hash, result)) is not None:
            return damaged
        if is_transient(e):
            return result("failed", _gave_up(att, type(e).__name__), "transient")
        _quarantine_copy(data, job, src_hash)
        return result("failed", f"internal error ({type(e).__name__})", "internal")


def is_media_index(data: bytes) -> bool:
    """Whether the bytes are a DICOMDIR: the Media Storage Directory SOP Class in the file
    meta, or a Directory Record Sequence (as reader.read_instance tells one apart). Asked
    only of a file the reader refused, so the second parse costs nothing in a normal run."""
    from pydicom import dcmread

    try:
        ds = dcmread(io.BytesIO(data), force=True, stop_before_pixels=True, specific_tags=[_DIRECTORY_RECORDS])
        meta = getattr(ds, "file_meta", None)
        sop_class = str((meta.get("MediaStorageSOPClassUID") if meta else None) or "")
        return sop_class == DICOMDIR_CLASS or _DIRECTORY_RECORDS in ds
    except Exception:  # noqa: BLE001 - unreadable here means not recognisably a DICOMDIR
        return False


def _damaged(e: Exception, data: bytes, job: Job, src_hash: str, result) -> ItemResult | None:
    """pydicom decodes a value when something first reads it, so a damaged file that parsed
    raises in the header pass or the write, as ValueError or even OSError: that is the
    file's fault (quarantined with a typed reason), not storage's and not ours."""
    damaged = input_error(e)
    if damaged is None:
        return None
    _quarantine_copy(data, job, src_hash)
    return result("quarantined", str(damaged), damaged.reason)


class _Quarantine(Exception):
    pass


def _other_kind(path: Path, item: Item, job: Job, sink, src_hash: str, att: Attempts) -> ItemResult | None:
    """Slides (never read whole: they are gigabytes) and annotation files take their own
    path; None means the item is treated as DICOM."""
    from phiscrub.wsi import registry
    from phiscrub.wsi.annotations import sniff_bytes

    try:
        size = path.stat().st_size
        head = _file_head(path)
        if head[128:132] == b"DICM":
            # a Part 10 file, also where its preamble is a TIFF header (a dual-personality
            # file: its DICOM header must be de-identified, as from a bucket); no slide parser
            # or annotation sniff need open it
            return None
        fmt = att.call(lambda: registry.detect(path))
    except OSError as e:
        return ItemResult(item.uri, src_hash, 0, "failed", f"cannot read ({e.strerror})", "io", attempts=att.total)
    if fmt is not None:
        return _slide(path, item, job, sink, src_hash, att, size)
    if sniff_bytes(head) is None:
        return None
    try:
        data = att.call(path.read_bytes)
    except OSError as e:
        return ItemResult(item.uri, src_hash, size, "failed", f"cannot read ({e.strerror})", "io", attempts=att.total)
    return _annotation(item, data, job, sink, src_hash, att)


def _file_head(path: Path) -> bytes:
    """The first bytes, or none: an unreadable file is the DICOM read's to report."""
    try:
        with open(path, "rb") as fh:
            return fh.read(_HEAD)
    except OSError:
        return b""


def _slide(path: Path, item: Item, job: Job, sink, src_hash: str, att: Attempts, size: int) -> ItemResult:
    import dataclasses

    from phiscrub.wsi.registry import SlideJob
    from phiscrub.wsi.slide import deidentify_slide

    def result(status: str, reason: str = "", category: str = "", **kw) -> ItemResult:
        return ItemResult(item.uri, src_hash, size, status, reason, category, attempts=att.total, **kw)

    local_dir = getattr(sink, "local_dir", None)
    if job.in_place and local_dir is None:
        return result("failed", "--in-place needs a local source and destination", "unsupported")
    staging = None if local_dir is not None else Path(tempfile.mkdtemp(prefix="phiscrub-slide-"))
    try:
        m = deidentify_slide(path, local_dir or staging, SlideJob(job.keys, job.config, job.in_place))
        if staging is not None:  # a bucket or store: upload what was verified, file by file
            for f in sorted(p for p in staging.rglob("*") if p.is_file()):
                rel = f.relative_to(staging).as_posix()
                att.call(lambda f=f, rel=rel: sink.put_file(rel, f))
    except TransientError as e:  # tried as often as the policy allows: failed, not unsafe; a rerun tries again
        return result("failed", _gave_up(att, str(e)), "transient")
    except PhiscrubError as e:
        _quarantine_file(path, job, src_hash)
        cat = "verification" if e.reason == "verification-failed" else e.reason
        return result("quarantined", str(e), cat)
    except Exception as e:  # noqa: BLE001 - one bad slide must not stop the run
        if is_transient(e):
            return result("failed", _gave_up(att, type(e).__name__), "transient")
        _quarantine_file(path, job, src_hash)
        return result("failed", f"internal error ({type(e).__name__})", "internal")
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return result("done", relpath=m.outputs[0] if m.outputs else "", manifest=dataclasses.asdict(m))


def _remote_slide(item: Item, job: Job, source, sink, src_hash: str, att: Attempts) -> ItemResult:
    """A TIFF-family object from a bucket: streamed to a local temporary file (slides are
    never read whole into memory), then the local path. Multi-file formats (MRXS: a file
    beside a folder) are not supported from object stores: their parts are separate objects."""
    fetch = getattr(source, "fetch", None)
    if fetch is None:
        return ItemResult(item.uri, src_hash, item.size, "quarantined",
                          "slides are not supported from this kind of source", "unsupported", attempts=att.total)
    tmpdir = Path(tempfile.mkdtemp(prefix="phiscrub-fetch-"))
    try:
        # the object's own name, where it is a plain one: wsi.patients may map a slide by its
        # file name (a temporary path, never written to the output or the state)
        name = item.uri.rstrip("/").rsplit("/", 1)[-1]
        local = tmpdir / (name if name and name not in (".", "..") and "\\" not in name and len(name) < 200 else "slide")
        att.call(lambda: fetch(item, local))
        res = _other_kind(local, item, job, sink, src_hash, att)
        if res is None:  # a TIFF that is no slide phiscrub knows: it goes the DICOM way (and fails as not DICOM)
            return _dicom(item, local.read_bytes(), job, sink, src_hash, att)
        res.size = item.size
        return res
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _annotation(item: Item, data: bytes, job: Job, sink, src_hash: str, att: Attempts) -> ItemResult | None:
    import hashlib

    from phiscrub.wsi.annotations import scrub_annotation, sniff_bytes

    kind = sniff_bytes(data[:_HEAD])
    if kind is None:
        return None

    def result(status: str, reason: str = "", category: str = "", **kw) -> ItemResult:
        return ItemResult(item.uri, src_hash, len(data), status, reason, category, attempts=att.total, **kw)

    try:
        out, manifest = scrub_annotation(data, kind, job.keys, job.config)
        suffix = Path(item.uri.rsplit("/", 1)[-1]).suffix.lower()[:12]
        rel = job.keys.token("annotation", hashlib.sha256(data).hexdigest()) + suffix
        _put(sink, rel, out, None, att)
        return result("done", relpath=rel, manifest=manifest)
    except TransientError as e:  # tried as often as the policy allows: failed, not unsafe; a rerun tries again
        return result("failed", _gave_up(att, str(e)), "transient")
    except PhiscrubError as e:
        _quarantine_copy(data, job, src_hash)
        return result("quarantined", str(e), e.reason)
    except OSError as e:
        return result("failed", f"cannot write ({e.strerror or type(e).__name__})", "transient" if is_transient(e) else "io")


def _quarantine_file(path: Path, job: Job, src_hash: str) -> None:
    """Like _quarantine_copy, streamed by the kernel: a slide does not fit in memory."""
    if job.quarantine is None or not path.exists():
        return
    job.quarantine.mkdir(parents=True, exist_ok=True)
    tmp = job.quarantine / f".partial-{src_hash}.bin"
    shutil.copyfile(path, tmp)
    os.replace(tmp, job.quarantine / f"{src_hash}.bin")


def _probe(src, job: Job):
    iod = annex_e.iod_for_sop_class(src.get("SOPClassUID"))
    return collect_probe(src, job.config.policy, iod)


def _quarantine_copy(data: bytes, job: Job, src_hash: str) -> None:
    """Originals are PHI: they go only to an operator-chosen folder outside the outputs,
    under their keyed hash, never under the output folder."""
    if job.quarantine is None:
        return
    job.quarantine.mkdir(parents=True, exist_ok=True)
    atomic_write(job.quarantine / f"{src_hash}.bin", data)


def run(items: Iterable[Item | Task | Path | str], job: Job, workers: int, on_result: Callable[[ItemResult], None],
        scheduler: str | None = None, work: Callable | None = None, on_crash: Callable | None = None) -> None:
    """Streams results as they come. ``scheduler`` (tcp://HOST:PORT) runs on a Dask cluster;
    else a local process pool of ``workers`` (1: in this process, for debugging). ``work``
    and ``on_crash`` replace process_item for the pre-pass's reads (see engines.Work)."""
    from phiscrub.pipeline import engines

    its = [i if isinstance(i, (Item, Task)) else _local_item(str(i)) for i in items]
    kw: dict = {} if work is None else {"work": work}
    crash: dict = {} if on_crash is None else {"on_crash": on_crash}
    if scheduler:
        engines.run_dask(its, job, scheduler, on_result, **kw, **crash)
    elif workers <= 1:
        engines.run_inline(its, job, on_result, **kw)
    else:  # no more workers than items: each one started is a process that imports everything
        engines.run_pool(its, job, max(1, min(workers, len(its))), on_result, **kw, **crash)


def _local_item(path: str) -> Item:
    try:
        st = os.stat(path)
        return Item(os.path.abspath(path), st.st_size, str(st.st_mtime_ns))
    except OSError:
        return Item(os.path.abspath(path), 0, "")


def default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
