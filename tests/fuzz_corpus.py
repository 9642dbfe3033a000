"""Damaged DICOM files with planted PHI, for the fuzz test (tests/test_fuzz.py).

A generator of our own is for coverage, not for accuracy figures (ARCHITECTURE.md): the
bases are files we did not make (pydicom's test files) plus the demo study, each given
identifying values of its own before it is damaged, so any trace of one in an output is a
leak that names its base. Damage is what real archives hold: flipped bits, files cut
anywhere or exactly between two elements, lengths no file can have, VRs that do not
exist or lie, junk inserted, elements written twice. Everything is seeded, so a failure
found once is found again from the same seed.
"""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from unittest import mock

from pydicom import dcmread
from pydicom.uid import generate_uid

from phiscrub import demo

from .conftest import TEST_FILES

MAX_BASE_BYTES = 48 * 1024  # larger test files add run time, not kinds of damage
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
SOME_VRS = [b"SQ", b"UN", b"OB", b"OW", b"US", b"UL", b"FD", b"AT", b"UI", b"DA", b"PN", b"LO", b"UT", b"SS", b"DS"]
_SYLLABLES = ("quor", "vant", "zel", "brix", "mordo", "tave", "lusk", "fen", "ozri", "kael", "dru", "pim")


@dataclass(frozen=True)
class Elem:
    """Where one top-level data element sits in its file (byte offsets)."""

    tag: int
    start: int
    value_at: int
    end: int  # where the next element starts (or the end of the file)
    vr: bytes | None  # as written (explicit VR); None when implicit
    len_size: int  # 2 or 4 bytes of length field
    little: bool


@dataclass
class Base:
    name: str
    data: bytes
    planted: list[str]
    elements: list[Elem] = field(default_factory=list)
    uids: tuple[str, ...] = ()  # its SOP Instance UID(s), as the data set and the file meta hold them


@dataclass(frozen=True)
class Mutant:
    name: str  # the file name in the corpus folder
    base: str
    mutations: tuple[str, ...]
    data: bytes
    uids: tuple[str, ...] = ()  # the SOP Instance UIDs it was given (none: it shares its base's)


def _surname(i: int) -> str:
    """A made-up, distinct surname per base: no word a dictionary or a test file holds."""
    a, b = divmod(i, len(_SYLLABLES))
    return (_SYLLABLES[b] + _SYLLABLES[(a * 5 + 3) % len(_SYLLABLES)] + "ington"[: 3 + i % 4]).capitalize()


def planted_patient(i: int, rng: random.Random) -> dict[str, str]:
    """The identifying values planted in base ``i``, keyword -> value."""
    sur = _surname(i)
    given = ("Marisol", "Thaddeus", "Oriane", "Casimir", "Ludovika", "Evander")[i % 6] + _SYLLABLES[i % 12]
    phys = "Drummel" + _SYLLABLES[(i + 5) % 12] + f"^Ada{i:02d}"
    pid = f"FZ{i:03d}M{rng.randrange(10**5, 10**6)}"
    birth = f"19{rng.randrange(30, 60)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
    study = f"19{rng.randrange(90, 99)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
    phone = f"555-{rng.randrange(100, 999)}-{rng.randrange(1000, 9999)}"
    return {
        "PatientName": f"{sur}^{given}",
        "PatientID": pid,
        "PatientBirthDate": birth,
        "PatientAddress": f"{rng.randrange(10, 99)} {sur}wick Lane",
        "PatientTelephoneNumbers": phone,
        "AccessionNumber": f"ACZ{i:03d}{rng.randrange(1000, 9999)}",
        "InstitutionName": f"{sur} Memorial Clinic",
        "ReferringPhysicianName": phys,
        "OperatorsName": f"Okafor{_SYLLABLES[(i + 7) % 12]}^Ben",
        "StudyDate": study,
        "ContentDate": study,
        "StudyDescription": f"Follow-up for {given} {sur}",
        "SeriesDescription": f"Series for {pid}",
        "ImageComments": f"{sur} called from {phone}",
        "OtherPatientIDs": f"OPZ{i:03d}{rng.randrange(10**4, 10**5)}",
    }


def _needles(values: dict[str, str]) -> list[str]:
    out = set()
    for kw, v in values.items():
        if kw in ("StudyDescription", "SeriesDescription", "ImageComments"):
            continue  # made of the values below; their parts are the needles
        out.add(v)
        out.update(p for p in v.replace("^", " ").split() if len(p) >= 8)
    return sorted(out)


def _plant(path: Path, i: int, rng: random.Random) -> Base | None:
    try:
        ds = dcmread(path)
        values = planted_patient(i, rng)
        for kw, v in values.items():
            setattr(ds, kw, v)
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        data = buf.getvalue()
        dcmread(io.BytesIO(data))  # the planted base must read back, or it is no base
    except Exception:  # noqa: BLE001 - a test file pydicom cannot rewrite is not a base
        return None
    return Base(path.stem, data, _needles(values))


def _demo_bases(workdir: Path, seed: int) -> list[Base]:
    """The demo study (CT, MR, SR with planted values everywhere), with seeded UIDs."""
    counter = count()

    def uid() -> str:
        return generate_uid(entropy_srcs=[f"fuzz-{seed}-{next(counter)}"])

    people = [demo.Patient(), demo.Patient(name="Pemberton^Lucasta^Ivy", pid="MRN9021337", birth="19610822",
                                           accession="ACC55120", address="7 Quenby Crescent, Leeds",
                                           phone="555-214-7781", institution="Harrowgate Infirmary",
                                           physician="Castellanos^Rufio", operator="Nakashima^Eiko",
                                           study_date="20190611", other_id="OTHERID55103",
                                           station="MRSUITE-EAST2", serial="SN-33019284")]
    out = []
    with mock.patch.object(demo, "generate_uid", uid):
        for n, p in enumerate(people):
            planted, paths = demo.make_study(workdir, p, folder=f"demo{n}")
            for path in paths:
                out.append(Base(f"demo{n}-{path.stem[-6:]}", path.read_bytes(), sorted(set(planted.values))))
    return out


def bases(workdir: Path, seed: int = 15) -> list[Base]:
    """Every base, planted and laid out; pydicom's files in name order, then the demo."""
    rng = random.Random(seed)
    found = []
    for i, path in enumerate(sorted(p for p in TEST_FILES.glob("*.dcm") if p.stat().st_size <= MAX_BASE_BYTES)):
        b = _plant(path, i, rng)
        if b is not None:
            found.append(b)
    found.extend(_demo_bases(workdir, seed))
    for b in found:
        b.elements = layout(b.data)
        b.uids = _sop_uids(b.data)
    return [b for b in found if b.elements]


def _sop_uids(data: bytes) -> tuple[str, ...]:
    try:
        ds = dcmread(io.BytesIO(data), force=True, stop_before_pixels=True)
        uids = {str(ds.get("SOPInstanceUID", "") or ""),
                str(getattr(ds, "file_meta", {}).get("MediaStorageSOPInstanceUID", "") or "")}
    except Exception:  # noqa: BLE001
        return ()
    return tuple(sorted(u for u in uids if u))


def renumbered(base: Base, i: int) -> tuple[bytes, list[str]]:
    """The base as another instance: each SOP Instance UID's last component replaced by one
    of the same length, so every offset of the layout still holds. Returns the new UIDs."""
    data, new = base.data, []
    for uid in base.uids:
        head, _, last = uid.rpartition(".")
        if not head or len(last) < 5 or not last.isdigit():
            continue
        span = 9 * 10 ** (len(last) - 1)
        fresh = f"{head}.{10 ** (len(last) - 1) + (int(last) + 7919 * (i + 1)) % span}"
        data = data.replace(uid.encode(), fresh.encode())
        new.append(fresh)
    return data, new


def layout(data: bytes) -> list[Elem]:
    """Top-level elements of a (sound) file, from pydicom's own read of it."""
    try:
        ds = dcmread(io.BytesIO(data), force=True)
    except Exception:  # noqa: BLE001
        return []
    raws = []
    for raw in ds._dict.values():
        tell = getattr(raw, "value_tell", None)
        if tell is None:
            tell = getattr(raw, "file_tell", None)
        if tell is None:
            continue
        implicit = getattr(raw, "is_implicit_VR", ds.is_implicit_VR)
        little = getattr(raw, "is_little_endian", ds.is_little_endian)
        if implicit:
            hdr, vr, size = 8, None, 4
        else:
            vr = data[tell - 8: tell - 6] if data[tell - 8: tell - 6] in LONG_VRS else data[tell - 4: tell - 2]
            hdr, size = (12, 4) if vr in LONG_VRS else (8, 2)
        raws.append((int(raw.tag), tell - hdr, tell, vr, size, bool(little)))
    raws.sort(key=lambda r: r[1])
    out = []
    for k, (tag, start, tell, vr, size, little) in enumerate(raws):
        end = raws[k + 1][1] if k + 1 < len(raws) else len(data)
        out.append(Elem(tag, start, tell, end, vr, size, little))
    return out


# -- mutations: each takes (base, data, rng) and returns the damaged bytes


def _pick(base: Base, rng: random.Random) -> Elem:
    return rng.choice(base.elements)


def bit_flip(base: Base, data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    first = base.elements[0].start
    pix = next((e.start for e in base.elements if e.tag == 0x7FE00010), len(data))
    for _ in range(rng.randint(1, 8)):
        hi = pix + 16 if rng.random() < 0.8 else len(buf)  # mostly the header: that is where parsers break
        lo = min(first, len(buf) - 1)
        pos = rng.randrange(lo, max(min(hi, len(buf)), lo + 1))
        buf[pos] ^= 1 << rng.randrange(8)
    return bytes(buf)


def cut_random(base: Base, data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(132, len(data))] if len(data) > 133 else data[:-1]


def cut_boundary(base: Base, data: bytes, rng: random.Random) -> bytes:
    return data[: _pick(base, rng).start]


def absurd_length(base: Base, data: bytes, rng: random.Random) -> bytes:
    e = _pick(base, rng)
    at = e.value_at - e.len_size
    declared = e.end - e.value_at
    if e.len_size == 2:
        choices = [0xFFFF, 0xFFFE, declared + 1, declared + 9, declared + 200, max(0, declared - 1), 0]
        fmt = "<H" if e.little else ">H"
    else:
        choices = [0xFFFFFFFF, 0xFFFFFFF0, 0x7FFFFFFF, len(data) * 3, declared + 1, declared + 13,
                   declared + 500, max(0, declared - 2), 0]
        fmt = "<L" if e.little else ">L"
    n = rng.choice(choices) & (0xFFFF if e.len_size == 2 else 0xFFFFFFFF)
    return data[:at] + struct.pack(fmt, n) + data[at + e.len_size:]


def bad_vr(base: Base, data: bytes, rng: random.Random) -> bytes:
    explicit = [e for e in base.elements if e.vr is not None]
    if not explicit:  # implicit VR has none to break: damage the tag instead
        e = _pick(base, rng)
        at = min(e.start + rng.randrange(4), len(data) - 1)
        return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1:]
    e = rng.choice(explicit)
    junk = bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ?\x00\xff") for _ in range(2))
    new = rng.choice([junk, b"\x00\x00", rng.choice(SOME_VRS)])
    return data[: e.start + 4] + new + data[e.start + 6:]


def insert_junk(base: Base, data: bytes, rng: random.Random) -> bytes:
    # (after a first damage cut the file short, its first element may start past the end)
    first = min(base.elements[0].start, len(data) - 1)
    at = _pick(base, rng).start if rng.random() < 0.6 else rng.randrange(first, len(data))
    kind = rng.randrange(4)
    if kind == 0:
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif kind == 1:
        junk = b"\xfe\xff\x00\xe0" + struct.pack("<L", rng.choice([0, 8, 0xFFFFFFFF, 0x10000]))  # a stray item
    elif kind == 2:
        junk = b"\xff" * rng.randint(1, 16)
    else:
        junk = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # a stray sequence delimiter
    return data[:at] + junk + data[at:]


def duplicate_element(base: Base, data: bytes, rng: random.Random) -> bytes:
    e = _pick(base, rng)
    copy = data[e.start: e.end]
    at = e.end if rng.random() < 0.6 else _pick(base, rng).start  # beside itself, or out of order
    return data[:at] + copy + data[at:]


MUTATIONS = {
    "bitflip": bit_flip,
    "cut-random": cut_random,
    "cut-boundary": cut_boundary,
    "absurd-length": absurd_length,
    "bad-vr": bad_vr,
    "junk": insert_junk,
    "duplicate": duplicate_element,
}


def mutants(all_bases: list[Base], n: int, seed: int = 15, shared: float = 0.25) -> Iterator[Mutant]:
    """``n`` damaged files, round robin over the bases; one in five carries two damages
    (the second on the layout of the sound file, so offsets may already be off: on purpose).

    A ``shared`` part keeps its base's SOP Instance UID, as damaged copies in an archive do;
    the others are renumbered first, so that each is transformed (the first complete copy
    of a UID is the only one that is) and the damage reaches the header pass and the write."""
    rng = random.Random(seed)
    names = sorted(MUTATIONS)
    for i in range(n):
        base = all_bases[i % len(all_bases)]
        ops = [names[(i // len(all_bases) + i) % len(names)]]
        if rng.random() < 0.2:
            ops.append(rng.choice(names))
        data, uids = (base.data, []) if rng.random() < shared else renumbered(base, i)
        for op in ops:
            data = MUTATIONS[op](base, data, rng)
        yield Mutant(f"{i:05d}-{base.name}-{'+'.join(ops)}.dcm", base.name, tuple(ops), data, tuple(uids))


def write_corpus(root: Path, workdir: Path, n: int = 2000, seed: int = 15) -> tuple[list[Base], list[Mutant]]:
    """Writes the damaged files into ``root`` (flat); ``workdir`` holds the demo bases."""
    root.mkdir(parents=True, exist_ok=True)
    all_bases = bases(workdir, seed)
    made = []
    for m in mutants(all_bases, n, seed):
        (root / m.name).write_bytes(m.data)
        made.append(m)
    return all_bases, made
