"""The job-wide pre-pass: every DICOM header of a job is read (never its pixels) before any
item is transformed, so that decisions which need the job as a whole are made once, the
same way whatever the worker count, on a rerun and on a resume.

What it decides:
- duplicates: several files with one SOP Instance UID give one output. Copies whose
  datasets are equal (file meta and preamble aside) are recorded as duplicates; among
  differing complete copies the first by sorted source URI is released (or the copy an
  earlier run already released: nothing written is silently replaced) and the others are
  quarantined; damaged copies go their usual way and are quarantined for their damage;
- study-wide terms: the free-text cleaner of every instance gets the identifying values
  of every instance of its study and patient (a description naming a physician found in
  a sibling instance is cleaned);
- the study digest: a keyed digest of those values, recorded in the job state, so that a
  resumed run redoes an item whose study gained values since it was written.

Identifying values live in this process's memory only, and travel to workers with their
tasks; neither the state, the audit nor a log ever holds one.

Why two steps: the header read is cheap and is done for every item; the content digest
needs the whole file and is taken only for SOP Instance UIDs that several files share.
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from phiscrub.dicom.text import PhiTerms
from phiscrub.pipeline.storage import Item

DUPLICATE_REASON = "identical copy of another file (same SOP Instance UID, same content)"
CONFLICT_REASON = "duplicate SOP Instance UID, different content"
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_HEADER_TAGS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass(frozen=True)
class Header:
    """What the pre-pass learns of one item. ``terms`` holds PHI: memory only."""

    uri: str
    sop: str = ""  # empty: not DICOM, unreadable, or no SOP Instance UID
    study: str = ""
    patient: str = ""  # identity.patient_identity: the group key of the study terms
    terms: PhiTerms | None = None


@dataclass(frozen=True)
class Copy:
    """The content check of one copy of a shared SOP Instance UID."""

    uri: str
    digest: str = ""  # empty: damaged or incomplete (the main pass gives the reason)


@dataclass(frozen=True)
class Directive:
    """What the main pass does with one item. ``terms`` holds PHI: memory only."""

    role: str = "process"  # process | duplicate | conflict
    terms: PhiTerms | None = None  # the study's and patient's values, merged
    study_digest: str = ""  # keyed digest of those values, for the job state


def _source(job):
    from phiscrub.pipeline import runner

    return runner._cached("src", job.src, job) if job.src else None


def _open(item: Item, job):
    """A file object on the item's bytes: the local file, the store's ranged reader, or the
    whole object in memory where the store has neither."""
    source = _source(job)
    local = source.local_path(item) if source is not None else item.uri
    if local is not None:
        return open(local, "rb")
    opener = getattr(source, "open", None)
    return opener(item) if opener is not None else io.BytesIO(source.read(item))


def read_header(item: Item, job) -> Header:
    """Runs in a worker. Any failure means 'no header': the main pass reads the item again
    and gives the typed reason."""
    import warnings

    from pydicom import dcmread

    from phiscrub.dicom import identity
    from phiscrub.dicom.un_vr import resolve_un
    from phiscrub.transform import needs_terms

    try:
        with _open(item, job) as fp:
            head = fp.read(132)
            if head[:4] in _TIFF_MAGIC and head[128:132] != b"DICM":
                return Header(item.uri)  # a slide: not DICOM
            fp.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = dcmread(fp, stop_before_pixels=True, force=head[128:132] != b"DICM")
                sop, study, _series = (str(ds.get(k, "") or "").strip() for k in _HEADER_TAGS)
                if not sop:
                    return Header(item.uri)
                terms = None
                if needs_terms(job.config):
                    resolve_un(ds)  # as the main pass reads it, so its terms hold what the main pass's would
                    terms = identity.collect_terms(ds)
                return Header(item.uri, sop, study, identity.patient_identity(ds), terms)
    except Exception:  # noqa: BLE001 - damaged, not DICOM or unreadable: the main pass says which
        return Header(item.uri)


def no_header(item: Item, job) -> Header:
    """The result for an item whose header read killed its worker (a native crash)."""
    return Header(item.uri)


def content_digest(data: bytes) -> str:
    """SHA-256 of the dataset as encoded, without preamble and file meta (two copies of an
    instance are the same when these bytes and their transfer syntax are)."""
    from pydicom.filereader import _read_file_meta_info, read_preamble

    fp = io.BytesIO(data)
    read_preamble(fp, force=True)
    meta = _read_file_meta_info(fp)
    syntax = str(meta.get("TransferSyntaxUID", "") or "")
    return hashlib.sha256(syntax.encode() + b"\0" + data[fp.tell():]).hexdigest()


def check_copy(item: Item, job) -> Copy:
    """Runs in a worker, for copies of a shared SOP Instance UID only: the whole file is
    read (as the main pass will), checked complete, and digested."""
    from phiscrub.dicom.reader import read_instance

    try:
        with _open(item, job) as fp:
            data = fp.read()
        read_instance(data)
        return Copy(item.uri, content_digest(data))
    except Exception:  # noqa: BLE001 - damaged: the main pass quarantines it with the reason
        return Copy(item.uri)


def no_copy(item: Item, job) -> Copy:
    return Copy(item.uri)


@dataclass
class JobIndex:
    """Studies, patients and SOP Instance UIDs of a job, built from its headers."""

    headers: dict[str, Header] = field(default_factory=dict)  # by source URI
    by_sop: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    group_terms: dict[str, PhiTerms] = field(default_factory=dict)
    _combined: dict[tuple[str, ...], PhiTerms] = field(default_factory=dict)

    def add(self, h: Header) -> None:
        if not h.sop:
            return
        # the study terms drop the per-item copy: one merged set per group is what is kept
        self.headers[h.uri] = Header(h.uri, h.sop, h.study, h.patient)
        self.by_sop[h.sop].append(h.uri)
        if h.terms is not None:
            for g in _groups(h):
                # in place: merging into a new set per instance would copy a study's values
                # once per instance
                self.group_terms.setdefault(g, PhiTerms()).update(h.terms)

    @property
    def shared(self) -> dict[str, list[str]]:
        """SOP Instance UIDs that several files carry, each with its copies sorted by URI."""
        return {sop: sorted(uris) for sop, uris in self.by_sop.items() if len(uris) > 1}

    def terms_of(self, uri: str) -> PhiTerms | None:
        """The merged values of the item's study and patient: one object per pair of
        groups, so the items of a study share it (and a task chunk pickles it once)."""
        h = self.headers.get(uri)
        if h is None:
            return None
        key = tuple(g for g in _groups(h) if g in self.group_terms)
        if not key:
            return None
        out = self._combined.get(key)
        if out is None:
            out = self._combined[key] = PhiTerms.combine(self.group_terms[g] for g in key)
        return out


def _groups(h: Header) -> list[str]:
    """The groups whose values an instance's text is cleaned with: its study, and its
    patient where the instance names one."""
    out = []
    if h.study:
        out.append("study:" + h.study)
    if h.patient and h.patient != "unknown":
        out.append("patient:" + h.patient)
    return out


def terms_digest(keys, terms: PhiTerms | None) -> str:
    """A keyed digest of a value set: equal sets give equal digests; the values cannot be
    recovered from it."""
    if terms is None:
        return ""
    return keys.hash_hex("study-values:" + "\x1f".join(terms.canonical()), 32)


Runner = Callable[[list, Callable, Callable, Callable], None]


def build(items: list[Item], job, run_work: Runner) -> JobIndex:
    """The header read over ``items`` (``decide`` checks the content of shared UIDs).
    ``run_work(elements, work, on_crash, on_result)`` runs a work function over elements on
    the job's engine (the same pool or cluster the main pass uses)."""
    index = JobIndex()
    run_work(items, read_header, no_header, index.add)
    return index


def decide(index: JobIndex, items_by_uri: dict[str, Item], job, run_work: Runner,
           released_before: Callable[[str], bool] = lambda uri: False) -> dict[str, Directive]:
    """A directive for every item of the index: its role and its study's terms."""
    copies: dict[str, Copy] = {}
    shared = index.shared
    if shared:
        todo = [items_by_uri[u] for uris in shared.values() for u in uris if u in items_by_uri]
        run_work(todo, check_copy, no_copy, lambda c: copies.__setitem__(c.uri, c))
    roles: dict[str, str] = {}
    for _sop, uris in shared.items():
        complete = [u for u in uris if copies.get(u, Copy(u)).digest]
        if not complete:
            continue  # all damaged: each is quarantined for its damage
        earlier = [u for u in complete if released_before(u)]
        chosen = earlier[0] if earlier else complete[0]
        want = copies[chosen].digest
        for u in complete:
            if u != chosen:
                roles[u] = "duplicate" if copies[u].digest == want else "conflict"
    out: dict[str, Directive] = {}
    digests: dict[int, str] = {}  # the items of a study share one terms object: one digest each
    for uri in index.headers:
        terms = index.terms_of(uri)
        digest = digests.get(id(terms))
        if digest is None:
            digest = digests[id(terms)] = terms_digest(job.keys, terms)
        out[uri] = Directive(roles.get(uri, "process"), terms, digest)
    return out


class StudyMemory:
    """What a long-running process (the gateway, the upload service) has seen of each study:
    they never see a whole study at once, so an instance's text is cleaned with its own
    values plus those of the instances of its study and patient seen before it, up to
    ``capacity`` groups (the least recently seen are forgotten)."""

    def __init__(self, capacity: int = 2048) -> None:
        self.capacity = capacity
        self._groups: OrderedDict[str, PhiTerms] = OrderedDict()

    def see(self, study: str, patient: str, own: PhiTerms) -> PhiTerms:
        groups = []
        for g in _groups(Header("", "-", study, patient)):
            known = self._groups.pop(g, None) or PhiTerms()
            known.update(own)  # in place: the group's set grows, it is not copied per instance
            self._groups[g] = known
            groups.append(known)
        while len(self._groups) > self.capacity:
            self._groups.popitem(last=False)
        return PhiTerms.combine([own, *groups])
