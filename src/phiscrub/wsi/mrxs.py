"""3DHISTECH MRXS (MIRAX): NAME.mrxs beside a folder NAME/ with Slidedat.ini, Index.dat and
Data files.

PHI lives in Slidedat.ini (field list: policy/data/wsi/mrxs.yaml), in SLIDE_ID repeated
at the head of Index.dat and of every Data file, and in the label and macro pictures stored
as non-hierarchical records. Tiles are never read: Data files are copied by the kernel
(copy_file_range/sendfile) and only the few changed byte ranges are written over the copy,
so time is that of a copy and memory stays flat. In place, the same ranges are written
through the crash-safe journal (wsi/journal.py), one file at a time.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

from phiscrub.errors import CorruptFile, UnsupportedInput
from phiscrub.keys import KeyRing
from phiscrub.wsi import mrxs_images
from phiscrub.wsi.mrxs_index import INDEX_VERSION, Index, Stored, read_index
from phiscrub.wsi.mrxs_ini import Ini
from phiscrub.wsi.registry import SlideFormat, SlideJob, SlideManifest, register_format
from phiscrub.wsi.tiff import apply_copy  # kernel copy, then the patches written over it

SLIDEDAT = "Slidedat.ini"
SLIDEDAT_MAX = 1 << 20  # OpenSlide's own limit
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_NONHIER = re.compile(r"^NONHIER_(\d+)_(.+)$")
_VAL = re.compile(r"^VAL_(\d+)(?:_(.+))?$")
_DATE = re.compile(r"(\d{4})([-./]?)(\d{2})\2(\d{2})")
_PROFILE = re.compile(rb'ProfileName="([^"]*)"')


@cache
def field_list() -> dict:
    return yaml.safe_load(resources.files("phiscrub.policy.data").joinpath("wsi/mrxs.yaml").read_text())


def folder_of(mrxs: Path) -> Path:
    """The companion folder: the file's name without its extension (OpenSlide's rule)."""
    return mrxs.with_suffix("") if mrxs.suffix else mrxs.with_name(mrxs.name + ".d")


def sniff(path: Path) -> bool:
    """A file whose companion folder holds a Slidedat.ini with the MIRAX sections."""
    try:
        if not path.is_file():
            return False
        ini = folder_of(path) / SLIDEDAT
        if not ini.is_file() or ini.stat().st_size > SLIDEDAT_MAX:
            return False
        head = ini.read_bytes()
    except OSError:
        return False
    return b"[GENERAL]" in head and b"SLIDE_ID" in head and b"[HIERARCHICAL]" in head


# ----------------------------------------------------------------------------- the slide


@dataclass
class Layer:
    """One non-hierarchical layer: its own keys and its values with their sub-keys."""

    keys: list[tuple[str, str]] = field(default_factory=list)  # suffix -> value (NAME, COUNT, ...)
    vals: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)  # value, [(suffix, v)]


@dataclass
class Slide:
    folder: Path
    ini: Ini
    version: str
    slide_id: str
    index_name: str
    datafiles: list[str]
    layers: list[Layer]
    index: Index

    def records(self) -> list[tuple[int, int, str, Stored]]:
        """(layer, value number, value name, place) for every non-hierarchical record."""
        out, r = [], 0
        for li, layer in enumerate(self.layers):
            for vi, (name, _) in enumerate(layer.vals):
                out.append((li, vi, name, self.index.nonhier[r]))
                r += 1
        return out


def _safe(name: str) -> str:
    if not _SAFE_NAME.match(name) or name in (".", ".."):
        raise CorruptFile("mrxs: Slidedat.ini names a file outside the slide folder")
    return name


def open_slide(mrxs: Path) -> Slide:
    folder = folder_of(mrxs)
    try:
        if (folder / SLIDEDAT).stat().st_size > SLIDEDAT_MAX:
            raise UnsupportedInput("mrxs: Slidedat.ini larger than 1 MiB")
        ini = Ini.parse((folder / SLIDEDAT).read_bytes())
    except OSError:
        raise CorruptFile("mrxs: the companion folder or its Slidedat.ini cannot be read") from None
    version = ini.require("GENERAL", "SLIDE_VERSION")
    slide_id = ini.require("GENERAL", "SLIDE_ID")
    if not slide_id.isascii():
        raise CorruptFile("mrxs: SLIDE_ID is not ASCII")
    index_name = _safe(ini.require("HIERARCHICAL", "INDEXFILE"))
    count = ini.integer("DATAFILE", "FILE_COUNT")
    if not 0 < count <= 100000:
        raise CorruptFile("mrxs: absurd FILE_COUNT")
    datafiles = [_safe(ini.require("DATAFILE", f"FILE_{i}")) for i in range(count)]
    layers = _layers(ini)
    zoom = ini.integer("HIERARCHICAL", "HIER_0_COUNT")
    if not 0 < zoom <= 64:
        raise CorruptFile("mrxs: absurd number of zoom levels")
    nonhier = sum(len(layer.vals) for layer in layers)
    index = read_index(folder / index_name, slide_id, zoom, nonhier, count)
    return Slide(folder, ini, version, slide_id, index_name, datafiles, layers, index)


def _layers(ini: Ini) -> list[Layer]:
    n = ini.integer("HIERARCHICAL", "NONHIER_COUNT")
    if not 0 <= n <= 1000:
        raise CorruptFile("mrxs: absurd NONHIER_COUNT")
    layers = [Layer() for _ in range(n)]
    counts = [ini.integer("HIERARCHICAL", f"NONHIER_{i}_COUNT") for i in range(n)]
    for i, c in enumerate(counts):
        if not 0 < c <= 10000:
            raise CorruptFile("mrxs: absurd NONHIER count")
        layers[i].vals = [("", []) for _ in range(c)]
    for ln in ini.items("HIERARCHICAL"):
        m = _NONHIER.match(ln.key or "")
        if not m or int(m.group(1)) >= n:
            continue
        layer, rest = layers[int(m.group(1))], m.group(2)
        v = _VAL.match(rest)
        if v is None:
            layer.keys.append((rest, ln.value or ""))
            continue
        j = int(v.group(1))
        if j >= len(layer.vals):
            continue  # stale keys past the count: OpenSlide ignores them too
        name, subs = layer.vals[j]
        if v.group(2) is None:
            layer.vals[j] = (ln.value or "", subs)
        else:
            subs.append((v.group(2), ln.value or ""))
    return layers


# ----------------------------------------------------------------------------- planning


@dataclass
class Plan:
    ini: Ini
    new_id: str
    index_patches: list[tuple[int, bytes]] = field(default_factory=list)
    data_patches: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)
    manifest: SlideManifest = field(default_factory=lambda: SlideManifest("mrxs"))


def same_length_id(keys: KeyRing, slide_id: str) -> str:
    """A keyed SLIDE_ID of the same length and alphabet (hex stays hex, case kept)."""
    hexy = all(c in "0123456789abcdefABCDEF" for c in slide_id)
    if hexy:
        out = ""
        n = 0
        while len(out) < len(slide_id):
            out += keys.digest("mrxs-slide-id", f"{n}:{slide_id}").hex()
            n += 1
        out = out[: len(slide_id)]
        out = out.upper() if slide_id.upper() == slide_id else out
    else:
        out = keys.token("mrxs-slide-id", slide_id, len(slide_id))
    if out == slide_id:  # astronomically unlikely, but never keep the source
        out = out[::-1]
    return out


def slide_pseudonym(keys: KeyRing, slide_id: str) -> str:
    return keys.value_pseudonym("mrxs:" + slide_id)


def plan(slide: Slide, job: SlideJob) -> Plan:
    keys, policy = job.keys, job.config.policy
    spec = field_list()
    ini = slide.ini
    new_id = same_length_id(keys, slide.slide_id)
    p = Plan(ini, new_id)
    m = p.manifest
    offset = keys.date_offset(_identity(slide, job), policy.date_shift_min, policy.date_shift_max)
    general = spec["general"]
    remove_re = [re.compile(r, re.I) for r in spec["any_section_remove"]]
    keep = set(spec["keep"])
    for ln in list(ini.lines):
        if ln.key is None or not ln.value:
            continue
        action = general.get(ln.key) if ln.section == "GENERAL" else None
        if action is None and ln.key not in keep and any(r.fullmatch(ln.key) for r in remove_re):
            action = "remove"
        name = f"{ln.section}.{ln.key}"
        if action == "pseudonymize":
            ln.value = new_id
        elif action == "shift_date":
            ln.value = _shift(ln.value, offset, policy)
            action = "shift_date" if ln.value else "remove"
        elif action == "remove":
            ln.value = ""
        elif slide.slide_id in ln.value:  # the id repeated anywhere else
            ln.value = ln.value.replace(slide.slide_id, new_id)
            action = "pseudonymize"
        if action:
            m.fields[name] = action
    # SLIDE_ID at the head of Index.dat and of every Data file (same length: offsets hold)
    id_at = len(INDEX_VERSION)
    p.index_patches.append((id_at, new_id.encode("ascii")))
    m.fields["Index.dat.header.SLIDE_ID"] = "pseudonymize"
    first = _first_offsets(slide)
    for f, name in enumerate(slide.datafiles):
        head = _read_head(slide.folder / name, min(first.get(f, 1 << 16), 1 << 16))
        patches = p.data_patches.setdefault(f, [])
        old = slide.slide_id.encode("ascii")
        at = head.find(old)
        while at != -1:
            patches.append((at, new_id.encode("ascii")))
            at = head.find(old, at + 1)
        for mm in _PROFILE.finditer(head):
            patches.append((mm.start(1), b"X" * len(mm.group(1))))
            m.fields["Data.header.ProfileName"] = "remove"
        if any(pt[1] == new_id.encode("ascii") for pt in patches):
            m.fields["Data.header.SLIDE_ID"] = "pseudonymize"
    _associated(slide, job, p)
    m.levels = len(slide.index.levels)
    m.tiles = sum(len(level) for level in slide.index.levels)
    return p


def _identity(slide: Slide, job: SlideJob) -> str:
    """The patient the user's CSV maps this slide to (by barcode, then by the .mrxs file's
    name), so that a patient's slides share one date offset (wsi/patients.py); otherwise the
    slide itself."""
    from phiscrub.wsi.patients import mapped

    barcode = next((ln.value for ln in slide.ini.lines if ln.section == "GENERAL" and ln.key == "SLIDE_BARCODE"), None)
    return mapped(job, barcode, slide.folder.name + ".mrxs") or "mrxs:" + slide.slide_id


def _shift(value: str, offset: int, policy) -> str:
    """A date-time per the one rule for slides (wsi/dates.py); MRXS writes its own forms."""
    from phiscrub.wsi import dates

    mode = dates.mode(policy)
    if mode == "keep":
        return value
    if mode == "remove":
        return ""
    import datetime as dt

    m = _DATE.search(value)
    if not m:
        return ""
    try:
        d = dt.date(int(m.group(1)), int(m.group(3)), int(m.group(4))) + dt.timedelta(days=offset)
    except (ValueError, OverflowError):
        return ""
    sep = m.group(2)
    return value[: m.start()] + f"{d.year:04d}{sep}{d.month:02d}{sep}{d.day:02d}" + value[m.end():]


def _first_offsets(slide: Slide) -> dict[int, int]:
    """Per Data file, where its first stored image starts: the header lies before it."""
    first: dict[int, int] = {}
    places = [s for level in slide.index.levels for _, s in level] + list(slide.index.nonhier)
    for s in places:
        first[s.fileno] = min(first.get(s.fileno, s.position), s.position)
    return first


def _read_head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(max(0, n))
    except OSError:
        raise CorruptFile("mrxs: a Data file named in Slidedat.ini cannot be read") from None


def _associated(slide: Slide, job: SlideJob, p: Plan) -> None:
    roles = field_list()["associated"]
    wsi = job.config.wsi
    removed: set[tuple[int, int]] = set()
    pseudonym = slide_pseudonym(job.keys, slide.slide_id)
    sizes = {f: (slide.folder / name).stat().st_size for f, name in enumerate(slide.datafiles)}
    for li, vi, name, s in slide.records():
        role = roles.get(name)
        if role is None:
            continue
        action = wsi.label if role == "label" else wsi.macro
        key = f"{role}:{name}"
        # the picture's bytes go in every case; what replaces them depends on the policy
        patches = p.data_patches.setdefault(s.fileno, [])
        patches.append((s.position, b"\x00" * s.size))
        if action == "remove":
            removed.add((li, vi))
            p.index_patches.append((s.entry_at, b"\x00" * 12))
            p.manifest.associated[key] = "removed"
            continue
        w, h = mrxs_images.jpeg_size(_read_at(slide.folder / slide.datafiles[s.fileno], s.position, min(s.size, 1 << 20)))
        if action == "replace":
            blob = mrxs_images.label_jpeg(w, h, pseudonym)
        else:  # blank, and redact: where the label sits in a MIRAX macro is not recorded, so all of it goes
            blob = mrxs_images.black_jpeg(w, h)
            if action == "redact":
                p.manifest.notes.append(f"{role}: label position unknown in MRXS, whole image blanked")
        if len(blob) <= s.size:
            at = s.position
        else:  # does not fit where the old one was: append to the same Data file
            at = sizes[s.fileno]
            sizes[s.fileno] += len(blob)
        patches.append((at, blob))
        p.index_patches.append((s.entry_at, _i32s(at, len(blob), s.fileno)))
        p.manifest.associated[key] = "blanked" if action in ("blank", "redact") else "replaced"
    if removed:
        _unlink(slide, p, removed)


def _i32s(*vals: int) -> bytes:
    return struct.pack(f"<{len(vals)}i", *vals)


def _read_at(path: Path, off: int, n: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(off)
        return fh.read(n)


def _unlink(slide: Slide, p: Plan, removed: set[tuple[int, int]]) -> None:
    """Take removed records out of Slidedat.ini and the Index.dat pointer table, so no
    reader finds them: values renumbered, emptied layers dropped, the table rewritten."""
    kept: list[int] = []
    r = 0
    new_layers: list[Layer] = []
    for li, layer in enumerate(slide.layers):
        vals = []
        for vi, val in enumerate(layer.vals):
            if (li, vi) in removed:
                for suffix, v in val[1]:
                    if suffix == "SECTION" and v:
                        p.ini.drop_section(v)
            else:
                vals.append(val)
                kept.append(r)
            r += 1
        if vals:
            new_layers.append(Layer(layer.keys, vals))
    raw = _read_at(slide.folder / slide.index_name, slide.index.table_base, 4 * r)
    old = [int.from_bytes(raw[4 * i: 4 * i + 4], "little", signed=True) for i in range(r)]
    pointers = [old[i] for i in kept] + [0] * (r - len(kept))
    p.index_patches.append((slide.index.table_base, _i32s(*pointers)))
    new_keys: list[tuple[str, str]] = []
    for li, layer in enumerate(new_layers):
        for suffix, v in layer.keys:
            new_keys.append((f"NONHIER_{li}_{suffix}", str(len(layer.vals)) if suffix == "COUNT" else v))
        for vi, (name, subs) in enumerate(layer.vals):
            new_keys.append((f"NONHIER_{li}_VAL_{vi}", name))
            new_keys += [(f"NONHIER_{li}_VAL_{vi}_{suffix}", v) for suffix, v in subs]
    p.ini.replace_keys("HIERARCHICAL", "NONHIER_", [("NONHIER_COUNT", str(len(new_layers))), *new_keys])


# ----------------------------------------------------------------------------- writing


def scrub(src: Path, dst: Path, job: SlideJob) -> SlideManifest:
    slide = open_slide(src)
    p = plan(slide, job)
    ini_bytes = p.ini.render()
    try:
        src_stub = src.stat().st_size
    except OSError:
        src_stub = 0
    if src_stub:
        p.manifest.notes.append(".mrxs stub emptied: readers take everything from the folder")
    if job.in_place:
        _in_place(slide, p, ini_bytes, src)
        p.manifest.outputs = [src.name]
        return p.manifest
    out_dir = folder_of(dst)
    tmp = dst.parent / f".partial-{os.getpid()}-{out_dir.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        for f, name in enumerate(slide.datafiles):
            apply_copy(slide.folder / name, tmp / name, p.data_patches.get(f, []))
        apply_copy(slide.folder / slide.index_name, tmp / slide.index_name, p.index_patches)
        _write(tmp / SLIDEDAT, ini_bytes)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    from phiscrub.pipeline.sinks import publish, write_temp

    publish(write_temp(dst, b"", durable=True), dst)
    rel = out_dir.name
    p.manifest.outputs = [dst.name, f"{rel}/{SLIDEDAT}", f"{rel}/{slide.index_name}", *(f"{rel}/{n}" for n in slide.datafiles)]
    return p.manifest


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _in_place(slide: Slide, p: Plan, ini_bytes: bytes, mrxs: Path) -> None:
    """Data files first, Index.dat next, Slidedat.ini last, each through the journal: a
    crash leaves every file either old or new, and a rerun finishes the rest."""
    from phiscrub.wsi.journal import apply_in_place

    old_ini = (slide.folder / SLIDEDAT).stat().st_size
    if len(ini_bytes) > old_ini:
        raise UnsupportedInput("mrxs: in place needs the new Slidedat.ini to fit the old one; use copy mode")
    for f, name in enumerate(slide.datafiles):
        if p.data_patches.get(f):
            apply_in_place(slide.folder / name, p.data_patches[f])
    apply_in_place(slide.folder / slide.index_name, p.index_patches)
    # padded with newlines to the old length: GLib skips blank lines, and the journal
    # restores by offset, so the file keeps its size
    apply_in_place(slide.folder / SLIDEDAT, [(0, ini_bytes + b"\n" * (old_ini - len(ini_bytes)))])
    if mrxs.stat().st_size:
        apply_in_place(mrxs, [(0, b"\n" * mrxs.stat().st_size)])


# ----------------------------------------------------------------------------- verifying


def source_values(slide: Slide) -> list[str]:
    """Every value the field list takes out of this slide, for the leak check."""
    spec = field_list()
    remove_re = [re.compile(r, re.I) for r in spec["any_section_remove"]]
    keep = set(spec["keep"])
    out = {slide.slide_id}
    for ln in slide.ini.lines:
        if ln.key is None or not ln.value or len(ln.value.strip()) < 4:
            continue
        if (ln.section == "GENERAL" and ln.key in spec["general"]) or (
            ln.key not in keep and any(r.fullmatch(ln.key) for r in remove_re)
        ):
            out.add(ln.value.strip())
    return sorted(out)


def verify(src: Path, dst: Path, job: SlideJob) -> list[str]:
    import openslide

    problems: list[str] = []
    original = open_slide(src)
    values = source_values(original)
    try:
        with openslide.OpenSlide(str(src)) as a, openslide.OpenSlide(str(dst)) as b:
            if b.properties.get("openslide.vendor") != "mirax":
                problems.append("output does not open as MIRAX")
            if a.level_dimensions != b.level_dimensions:
                problems.append("level dimensions differ from the source")
            props = "\x00".join(b.properties.values()).lower()
            leaked = sum(1 for v in values if v.lower() in props)
            if leaked:
                problems.append(f"{leaked} source value(s) still in the OpenSlide properties")
            for role in ("label", "macro"):
                action = job.config.wsi.label if role == "label" else job.config.wsi.macro
                present = role in b.associated_images
                if action == "remove" and present:
                    problems.append(f"{role} image still present")
                elif action in ("blank", "redact") and present:
                    img = b.associated_images[role].convert("L")
                    if img.getextrema()[1] > 16:
                        problems.append(f"{role} image is not blank")
    except openslide.OpenSlideError:
        problems.append("output does not open with OpenSlide")
        return problems
    try:
        out = open_slide(dst)
    except (CorruptFile, UnsupportedInput):
        return [*problems, "output index does not parse"]
    problems += _leaks(out, values)
    problems += _tiles_equal(original, out)
    return problems


def _leaks(out: Slide, values: list[str]) -> list[str]:
    small = [out.folder / SLIDEDAT, out.folder / out.index_name]
    blobs = [p.read_bytes() for p in small]
    first = _first_offsets(out)
    blobs += [_read_head(out.folder / n, first.get(f, 1 << 16)) for f, n in enumerate(out.datafiles)]
    hay = b"\x00".join(blobs).lower()
    n = sum(1 for v in values if v.lower().encode("utf-8", "replace") in hay)
    return [f"{n} source value(s) still in Slidedat.ini, Index.dat or a Data header"] if n else []


def _tiles_equal(a: Slide, b: Slide) -> list[str]:
    if [len(x) for x in a.index.levels] != [len(x) for x in b.index.levels]:
        return ["tile counts differ from the source"]
    for la, lb in zip(a.index.levels, b.index.levels, strict=True):
        for (ia, sa), (ib, sb) in zip(la, lb, strict=True):
            if ia != ib or (sa.position, sa.size, sa.fileno) != (sb.position, sb.size, sb.fileno):
                return ["tile index differs from the source"]
    for f, name in enumerate(a.datafiles):
        ranges = sorted((s.position, s.size) for level in a.index.levels for _, s in level if s.fileno == f)
        if not _ranges_equal(a.folder / name, b.folder / b.datafiles[f], ranges):
            return ["tile bytes differ from the source"]
    return []


def _ranges_equal(pa: Path, pb: Path, ranges: list[tuple[int, int]]) -> bool:
    chunk = 1 << 22
    with open(pa, "rb") as fa, open(pb, "rb") as fb:
        for off, size in _merge(ranges):
            fa.seek(off)
            fb.seek(off)
            while size > 0:
                n = min(chunk, size)
                if fa.read(n) != fb.read(n):
                    return False
                size -= n
    return True


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for off, size in ranges:
        if out and off <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], off + size - out[-1][0])
        else:
            out.append([off, size])
    return [(o, s) for o, s in out]


register_format(SlideFormat("mrxs", sniff, scrub, verify))
