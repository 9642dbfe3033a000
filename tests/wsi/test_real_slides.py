"""Real whole-slide files (tests/data/real_slides, sources in SOURCES.md there) end to end,
through the same calls the CLI makes: deidentify_slide for TIFF-family slides, transform_dicom
for DICOM WSI instances. Under the default policy each output must

(a) open in OpenSlide as the source's vendor (where OpenSlide reads the source at all);
(b) hold every level's pixels unchanged;
(c) hold no label and no macro;
(d) hold no source metadata value in any byte (ASCII, Latin-1, UTF-16, Base64) or in its
    path, except what the policy keeps on purpose: the KEPT tables below name it.

Also a copy of a real Aperio slide with TIFF DateTime written in, as scanners write it (neither
shared SVS has one): its date must not survive, alone or as the full date-time.
"""

from __future__ import annotations

import io
import re
import shutil
import struct
from fnmatch import fnmatchcase
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import openslide
import pydicom
import pytest
import tifffile

from phiscrub.keys import KeyRing
from phiscrub.policy.config import from_mapping
from phiscrub.transform import transform_dicom
from phiscrub.wsi.registry import SlideJob
from phiscrub.wsi.slide import deidentify_slide
from tests.wsi.leak import scan_bytes, scan_tree

DATA = Path(__file__).resolve().parents[1] / "data" / "real_slides"
KEYS = KeyRing(b"real-slide-test-key-0123456789")
CONFIG = from_mapping({})  # the default config and policy

# file -> the vendor OpenSlide names it (None: OpenSlide 4.0 cannot read the source at all)
TIFF_SLIDES = {
    "aperio-cmu1-small-region.svs": "aperio",
    "aperio-small.svs": "aperio",
    "hamamatsu-test3-tritc.ndpi": "hamamatsu",
    "generic-boxes.tiff": "generic-tiff",
    "ome-os1-detail.ome.tif": None,  # big-endian TIFF (Bio-Formats' default): "Cannot read dircount"
}
DICOM_SERIES = {
    "boxes": ["dicom-wsi-boxes_0.dcm", "dicom-wsi-boxes_1.dcm"],  # a volume and its thumbnail
    "highdicom": ["dicom-wsi-highdicom-sm_image.dcm"],
}
# fields each DICOM series really holds (so the leak check has something to find)
DICOM_EXPECT = {
    "boxes": {"DeviceSerialNumber", "ContainerIdentifier", "SpecimenIdentifier", "StudyDate",
              "InstanceCreationDate", "AcquisitionDateTime (date)", "InstitutionAddress", "SOPInstanceUID"},
    "highdicom": {"PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "DeviceSerialNumber",
                  "ContainerIdentifier", "SpecimenIdentifier", "StudyDate", "UniversalEntityID", "SOPInstanceUID"},
}

# What the default policy keeps on purpose, by source field name (fnmatch patterns) -> why.
# Field names: "<vendor>.<key>" as OpenSlide names properties ("aperio.MPP",
# "hamamatsu.SourceLens"), "tiff.<tag name>" for TIFF tags of any page, "ome.<Element>@<attr>"
# and "ome.<Element>" (its text) for OME-XML. Every other source value of 4 characters or more
# (6 digits or more when it is only a number) must be absent from the output.
KEPT: dict[str, str] = {
    # vendor identification
    "aperio.header": "the description's first line: library version, level geometry, codec, quality",
    "tiff.Make": "manufacturer",
    "tiff.Model": "scanner model (serial-like tokens dropped)",
    "tiff.Software": "software name and version (serial-like tokens dropped)",
    "ome.OME@Creator": "writing software and version",
    # scale and magnification
    "aperio.MPP": "microns per pixel",
    "aperio.AppMag": "objective power",
    "hamamatsu.SourceLens": "objective power",
    "hamamatsu.Objective.Lens.Magnificant": "objective magnification",
    "tiff.XResolution": "pixel size",
    "tiff.YResolution": "pixel size",
    "tiff.ResolutionUnit": "pixel size unit",
    # dimensions and scan geometry
    "aperio.OriginalWidth": "full scan width",
    "aperio.OriginalHeight": "full scan height",
    "aperio.StripeWidth": "scan stripe width",
    "aperio.Left": "region position on the slide",
    "aperio.Top": "region position on the slide",
    "aperio.LineCameraSkew": "camera geometry",
    "aperio.LineAreaXOffset": "camera geometry",
    "aperio.LineAreaYOffset": "camera geometry",
    "hamamatsu.XOffsetFromSlideCentre": "level position on the slide (also private tag 65422)",
    "hamamatsu.YOffsetFromSlideCentre": "level position on the slide (also private tag 65423)",
    "tiff.65434": "NDPI fluorescence: the filter channel's name (optics)",
    "ome.Pixels@*": "dimensions, pixel type, physical pixel size",
    "ome.Channel@*": "channel layout",
    "ome.TiffData@*": "plane-to-IFD map",
    "ome.*@ID": "OME-XML cross-reference IDs (Image:0, Pixels:0 ...)",
    "ome.OME@schemaLocation": "the OME schema",
    # optics and display
    "aperio.Focus Offset": "optics",
    "aperio.Parmset": "image processing preset",
    # times of day: the default policy (retain_longitudinal_modified_dates) moves dates by the
    # patient's offset and keeps times of day, as DICOM keeps TM (phiscrub/wsi/dates.py); the
    # date part of a date-time (tiff.DateTime) is still checked, see DATE_TIMES
    "aperio.Time": "time of day",
}
DATE_TIMES = ("tiff.DateTime",)  # "YYYY:MM:DD HH:MM:SS": the whole value and its date are checked

# DICOM: the source attributes whose values must not survive (any depth), besides every DA
# value and the date of every DT value. Kept on purpose there: Manufacturer,
# ManufacturerModelName, SoftwareVersions (vendor identification), TM values (times of day,
# as above), pixel spacing, objective power, imaged volume and matrix sizes, codes.
DICOM_CHECKED = (
    "PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "AccessionNumber", "StudyID",
    "ReferringPhysicianName", "DeviceSerialNumber", "ContainerIdentifier", "SpecimenIdentifier",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "ContributionDescription",
    "ImageComments", "UniversalEntityID", "TextValue", "LabelText", "BarcodeValue",
    "SOPInstanceUID", "MediaStorageSOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "FrameOfReferenceUID", "PyramidUID", "AcquisitionUID", "SpecimenUID", "DimensionOrganizationUID",
    "InstanceCreatorUID",
)
DICOM_KEPT = ("Manufacturer", "ManufacturerModelName", "SoftwareVersions")


class Values(dict):
    """Source value -> the field names that held it. Its repr shows no value, so a failing
    test's report names fields only."""

    def __repr__(self) -> str:
        return f"<{len(self)} source values>"


def kept(name: str) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in KEPT)


# ---------------------------------------------------------------- source values


def _parts(value: str) -> set[str]:
    """A value and, for composite ones (NDPI's 'a;b=c;...', multi-line maps), its pieces."""
    out = {value.strip()}
    for piece in re.split(r"[;|\r\n]", value):
        out.add(piece.partition("=")[2].strip() if "=" in piece else piece.strip())
    return {p for p in out if p}


def _aperio(desc: str, add) -> None:
    first, *pairs = desc.split("|")
    header, *older = first.split(";")  # the older header after ';' is always removed
    add("aperio.header", header)
    for o in older:
        add("aperio.older-header", o)
    for pair in pairs:
        key, _, value = pair.partition(" = ")
        add(f"aperio.{key.strip()}", value)


def _ome(desc: str, add) -> None:
    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    for el in ElementTree.fromstring(desc).iter():
        name = local(el.tag)
        for attr, value in el.attrib.items():
            add(f"ome.{name}@{local(attr)}", value)
        if el.text and el.text.strip():
            add(f"ome.{name}", el.text)


def source_fields(path: Path) -> dict[str, set[str]]:
    """Field name -> its values in the source: OpenSlide's properties, every page's ASCII TIFF
    tags, and the vendor's description split into its fields."""
    fields: dict[str, set[str]] = {}

    def add(name: str, value: str) -> None:
        fields.setdefault(name, set()).update(_parts(str(value)))

    try:
        with openslide.OpenSlide(str(path)) as s:
            for name, value in s.properties.items():
                # openslide.*: derived by OpenSlide; the description is split below
                if not name.startswith("openslide.") and name != "tiff.ImageDescription":
                    add(name, value)
    except openslide.OpenSlideError:
        pass
    with tifffile.TiffFile(path) as tf:
        for page in tf.pages:
            for tag in page.tags.values():
                if not isinstance(tag.value, str):
                    continue
                if tag.code == 270:
                    if tag.value.startswith("Aperio"):
                        _aperio(tag.value, add)
                    elif "<OME" in tag.value:
                        _ome(tag.value, add)
                    else:
                        add("tiff.ImageDescription", tag.value)
                elif tag.code == 65449:  # NDPI property map: key=value lines
                    for line in tag.value.splitlines():
                        key, _, value = line.partition("=")
                        add(f"hamamatsu.{key.strip()}", value)
                else:
                    add(f"tiff.{tag.name}", tag.value)
    return fields


def distinctive(value: str) -> bool:
    """Long enough that finding it in an output's bytes means it was copied there."""
    if len(value) < 4:
        return False
    return not (re.fullmatch(r"[-+]?[\d.,]+", value) and sum(c.isdigit() for c in value) < 6)


def must_not_survive(fields: dict[str, set[str]], keep=kept) -> Values:
    """Value -> the field names that held it: every distinctive value of a field the policy
    does not keep, less what a kept field holds too (the same text kept elsewhere)."""
    kept_values = [v.lower() for name, vs in fields.items() if keep(name) for v in vs]
    found = Values()
    for name, values in fields.items():
        if keep(name):
            continue
        for v in values:
            if name in DATE_TIMES:  # the date part; the time of day is kept (see KEPT)
                date = v.split(" ")[0]
                if distinctive(date):
                    found.setdefault(date, set()).add(f"{name} (date)")
            if distinctive(v) and not any(v.lower() in k for k in kept_values):
                found.setdefault(v, set()).add(name)
    return found


# ---------------------------------------------------------------- checks


def _levels_equal_openslide(src: Path, out: Path) -> None:
    with openslide.OpenSlide(str(src)) as a, openslide.OpenSlide(str(out)) as b:
        assert a.level_dimensions == b.level_dimensions
        for level, dims in enumerate(a.level_dimensions):
            pa = np.asarray(a.read_region((0, 0), level, dims))
            pb = np.asarray(b.read_region((0, 0), level, dims))
            assert np.array_equal(pa, pb), f"level {level} pixels differ"


def _levels_equal_tifffile(src: Path, out: Path) -> None:
    with tifffile.TiffFile(src) as a, tifffile.TiffFile(out) as b:
        la, lb = a.series[0].levels, b.series[0].levels
        assert len(la) == len(lb)
        for level, (x, y) in enumerate(zip(la, lb, strict=True)):
            assert np.array_equal(x.asarray(), y.asarray()), f"level {level} pixels differ"


def _no_leak(out_root: Path, values: Values, extra: bytes = b"") -> None:
    hits = scan_tree(out_root, list(values))
    names = sorted({n for vs in hits.values() for v in vs for n in values[v]})
    names += sorted({n for v in scan_bytes(extra, list(values)) for n in values[v]})
    # the message names the source fields, never their values
    assert not names, f"source values of these fields survive: {names}"


def check_slide(src: Path, vendor: str | None, tmp_path: Path, values: Values | None = None):
    out_dir = tmp_path / "out"
    manifest = deidentify_slide(src, out_dir, SlideJob(KEYS, CONFIG))
    files = sorted(p for p in out_dir.rglob("*") if p.is_file())
    assert [p.name for p in files] == manifest.outputs
    out = out_dir / manifest.outputs[0]
    assert src.stem.split(".")[0] not in out.name
    # (a) the same vendor, (b) the same pixels, (c) no label, no macro
    if vendor is not None:
        with openslide.OpenSlide(str(out)) as s:
            assert s.properties["openslide.vendor"] == vendor
            assert not {"label", "macro"} & set(s.associated_images)
        _levels_equal_openslide(src, out)
    else:
        _levels_equal_tifffile(src, out)
    # (d) no source value anywhere, the manifest (audit) included
    values = must_not_survive(source_fields(src)) if values is None else values
    _no_leak(out_dir, values, repr(manifest).encode())
    return out, manifest


@pytest.mark.parametrize("name", list(TIFF_SLIDES))
def test_real_slide_deidentified(name, tmp_path):
    src = tmp_path / "src" / name
    src.parent.mkdir()
    shutil.copy(DATA / name, src)
    values = must_not_survive(source_fields(src))
    check_slide(src, TIFF_SLIDES[name], tmp_path, values)


def test_every_real_tiff_slide_has_something_to_remove():
    """The leak check is not empty: each identifying source field is found and checked."""
    expect = {
        "aperio-cmu1-small-region.svs": {"aperio.ScanScope ID", "aperio.Filename", "aperio.User", "aperio.ImageID",
                                         "aperio.Date"},
        "aperio-small.svs": {"aperio.ScanScope ID", "aperio.User", "aperio.Date"},
        "hamamatsu-test3-tritc.ndpi": {"tiff.DateTime (date)", "hamamatsu.NDP.S/N", "hamamatsu.Macro.S/N",
                                       "hamamatsu.Created", "hamamatsu.Updated", "tiff.65442"},
        "ome-os1-detail.ome.tif": {"ome.OME@UUID", "ome.UUID@FileName", "ome.UUID"},
    }
    for name, names in expect.items():
        found = {n for ns in must_not_survive(source_fields(DATA / name)).values() for n in ns}
        assert names <= found, name
        # and they really are in the source's bytes (else the leak test proves nothing)
        values = must_not_survive(source_fields(DATA / name))
        assert scan_tree(DATA / name, list(values)), name


# ---------------------------------------------------------------- DateTime written in


def write_datetime(src: Path, dst: Path, stamp: str) -> None:
    """A copy of a classic little-endian TIFF with tag 306 DateTime = ``stamp`` in every IFD,
    as scanners that write it do (Hamamatsu, Leica). Each IFD is rewritten at the end of the
    file with the tag added in order, and the chain relinked; tile data and every other value
    stay where they are."""
    data = bytearray(src.read_bytes())
    assert data[:4] == b"II*\x00"
    chain = []
    off = struct.unpack_from("<I", data, 4)[0]
    while off:
        chain.append(off)
        n = struct.unpack_from("<H", data, off)[0]
        off = struct.unpack_from("<I", data, off + 2 + 12 * n)[0]
    text = stamp.encode("ascii") + b"\x00"  # count 20, NUL included
    assert len(text) == 20
    if len(data) % 2:
        data += b"\x00"
    text_at = len(data)
    data += text
    ifds = []
    for old in chain:
        n = struct.unpack_from("<H", data, old)[0]
        entries = [bytes(data[old + 2 + 12 * i: old + 14 + 12 * i]) for i in range(n)]
        entries = [e for e in entries if struct.unpack_from("<H", e)[0] != 306]
        entries.append(struct.pack("<HHII", 306, 2, len(text), text_at))
        ifds.append(sorted(entries, key=lambda e: struct.unpack_from("<H", e)[0]))
    at, pos = [], len(data)
    for entries in ifds:
        at.append(pos)
        pos += 2 + 12 * len(entries) + 4
    for i, entries in enumerate(ifds):
        nxt = at[i + 1] if i + 1 < len(at) else 0
        data += struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", nxt)
    struct.pack_into("<I", data, 4, at[0])
    dst.write_bytes(bytes(data))


def test_aperio_with_scanner_datetime(tmp_path):
    base = DATA / "aperio-cmu1-small-region.svs"
    with tifffile.TiffFile(base) as tf:
        desc = dict(p.partition(" = ")[::2] for p in tf.pages[0].description.split("|")[1:])
    month, day, year = desc["Date"].split("/")
    date = f"20{year}:{month}:{day}"
    stamp = f"{date} {desc['Time']}"  # the description's scan time, as TIFF writes it
    src = tmp_path / "src" / "aperio-cmu1-datetime.svs"
    src.parent.mkdir()
    write_datetime(base, src, stamp)
    with openslide.OpenSlide(str(src)) as s:
        assert s.properties["tiff.DateTime"] == stamp
        assert s.properties["openslide.vendor"] == "aperio"
    with tifffile.TiffFile(src) as tf:
        assert all(p.tags[306].value == stamp for p in tf.pages)
    fields = source_fields(src)
    values = must_not_survive(fields)
    assert {stamp, date, desc["Date"]} <= set(values)
    out, _ = check_slide(src, "aperio", tmp_path, values)
    with tifffile.TiffFile(out) as tf:
        for page in tf.pages:  # kept (the date moved) or removed, never the source's
            if 306 in page.tags:
                assert not page.tags[306].value.startswith(date)


# ---------------------------------------------------------------- DICOM WSI


def dicom_values(ds: pydicom.Dataset) -> Values:
    found = Values()
    kept_values: list[str] = []

    def add(value: str, name: str) -> None:
        if distinctive(value):
            found.setdefault(value, set()).add(name)

    def walk(d: pydicom.Dataset) -> None:
        for el in d:
            if el.VR == "SQ":
                for item in el.value:
                    walk(item)
                continue
            values = el.value if isinstance(el.value, pydicom.multival.MultiValue) else [el.value]
            strings = [str(v) for v in values if v is not None and not isinstance(v, bytes)]
            if el.keyword in DICOM_KEPT:
                kept_values.extend(s.lower() for s in strings)
            elif el.VR == "DA" or el.keyword in DICOM_CHECKED:
                for s in strings:
                    add(s, el.keyword)
            elif el.VR == "DT":
                for s in strings:
                    add(s, el.keyword)
                    add(s[:8], f"{el.keyword} (date)")

    walk(ds.file_meta)
    walk(ds)
    return Values((v, n) for v, n in found.items() if not any(v.lower() in k for k in kept_values))


@pytest.mark.parametrize("series", list(DICOM_SERIES))
def test_real_dicom_wsi_deidentified(series, tmp_path):
    src_dir, out_dir = tmp_path / "src", tmp_path / "out"
    src_dir.mkdir()
    values = Values()
    outs = []
    for name in DICOM_SERIES[series]:
        shutil.copy(DATA / name, src_dir / name)
        for v, names in dicom_values(pydicom.dcmread(DATA / name)).items():
            values.setdefault(v, set()).update(names)
        out = transform_dicom((DATA / name).read_bytes(), CONFIG, KEYS, CONFIG.policy.digest())
        target = out_dir / out.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(out.data)
        outs.append((src_dir / name, target, out))
    # the check has something to find, and it is in the sources' bytes
    assert DICOM_EXPECT[series] <= {n for ns in values.values() for n in ns}
    assert DICOM_EXPECT[series] <= {n for vs in scan_tree(src_dir, list(values)).values() for v in vs for n in values[v]}
    for src, target, out in outs:
        with openslide.OpenSlide(str(src)) as s, openslide.OpenSlide(str(target)) as o:
            assert o.properties["openslide.vendor"] == s.properties["openslide.vendor"] == "dicom"
            assert not {"label", "macro"} & set(o.associated_images)
        _levels_equal_openslide(src, target)
        a, b = pydicom.dcmread(src), pydicom.dcmread(io.BytesIO(out.data))
        assert a.PixelData == b.PixelData
        _no_leak(out_dir, values, repr(out.manifest).encode())


def test_every_real_file_is_released_through_the_cli(cli, tmp_path):
    """The whole job, as a user runs it, with its release check: every real slide and DICOM
    file comes out, none is quarantined, and `verify` re-reads them all without a problem.
    (The release check once quarantined highdicom's SM test file: its patient 'Test^Patient'
    matched 'Test Manufacturer'.)"""
    src = tmp_path / "in"
    src.mkdir()
    files = [p for p in DATA.iterdir() if p.suffix != ".md"]
    for p in files:
        shutil.copy2(p, src / p.name)
    env = {"PHISCRUB_KEY": "real-slide-cli-key-0123456789abcdef"}
    out = tmp_path / "out"
    r = cli("deidentify", src, out, "-j", "1", env=env)
    assert r.exit_code == 0, r.output
    assert f"{len(files)} done, 0 quarantined, 0 failed" in r.output, r.output
    v = cli("verify", src, out, env=env)
    assert v.exit_code == 0 and "0 problem(s)" in v.output, v.output
