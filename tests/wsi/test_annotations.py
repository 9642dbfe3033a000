"""Annotation files: detection by content, no planted value left, geometry/classes/measurements exact."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from phiscrub.dicom.text import PhiTerms
from phiscrub.errors import CorruptFile, UnsupportedInput
from phiscrub.keys import KeyRing
from phiscrub.policy.config import from_mapping
from phiscrub.wsi.annotations import KINDS, scrub_annotation, sniff_annotation
from tests.wsi import annotation_factory as af
from tests.wsi.leak import scan_bytes

KEYS = KeyRing(b"test-key-0123456789abcdef0123")
CONFIG = from_mapping({})


def _terms() -> PhiTerms:
    t = PhiTerms()
    t.add_name(af.PATIENT)
    return t


@pytest.mark.parametrize("kind", KINDS)
def test_sniff_by_content_not_extension(kind, tmp_path):
    p = tmp_path / "x.bin"  # no telling extension
    p.write_bytes(af.MAKERS[kind]())
    assert sniff_annotation(p) == kind


def test_sniff_rejects_others(tmp_path):
    for name, data in {
        "a.xml": b"<?xml version='1.0'?><Other><Annotation/></Other>",
        "b.json": b'{"type": "Topology"}',
        "c.tif": b"II*\x00" + b"\x00" * 100,
        "d.txt": b"",
    }.items():
        p = tmp_path / name
        p.write_bytes(data)
        assert sniff_annotation(p) is None
    assert sniff_annotation(tmp_path / "missing.xml") is None


@pytest.mark.parametrize("kind", KINDS)
def test_no_planted_value_left(kind):
    out, manifest = scrub_annotation(af.MAKERS[kind](), kind, KEYS, CONFIG, terms=_terms())
    assert scan_bytes(out, af.PLANTED + [af.PATIENT, "Bartholomew", "Quincey"]) == []
    assert scan_bytes(json.dumps(manifest).encode(), af.PLANTED + [af.PATIENT]) == []
    assert manifest["format"] == kind and manifest["removed"]
    assert sniff_annotation_bytes(out) == kind  # still the same format


def sniff_annotation_bytes(data: bytes) -> str | None:
    from phiscrub.wsi.annotations import sniff_bytes

    return sniff_bytes(data)


@pytest.mark.parametrize("kind", KINDS)
def test_without_outside_terms_the_file_own_phi_still_goes(kind):
    """Authors, timestamps, paths, IDs, e-mails and the author's name in comments go even
    when nothing outside the file is known."""
    out, _ = scrub_annotation(af.MAKERS[kind](), kind, KEYS, CONFIG)
    assert scan_bytes(out, af.PLANTED) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_patient_name_in_free_text_goes_even_when_nothing_names_it(kind):
    """The default (wsi.annotation_text: vocabulary) keeps only tissue, region and
    measurement words in names, titles and comments, so a patient's name typed into a title
    goes although no header says it is one; 'clean' alone (known values and patterns) keeps
    it, which is why it is not the default; 'remove' drops all free text."""
    names = [af.PATIENT, "Bartholomew", "Quincey"]
    out, manifest = scrub_annotation(af.MAKERS[kind](), kind, KEYS, CONFIG)
    assert scan_bytes(out, names + af.PLANTED) == []
    assert manifest["spans_replaced"] > 0
    clean = from_mapping({"wsi": {"annotation_text": "clean"}})
    kept, _ = scrub_annotation(af.MAKERS[kind](), kind, KEYS, clean)
    assert scan_bytes(kept, af.PLANTED) == []
    if kind != "aperio_xml":  # there the name is only in an XML comment, which always goes
        assert scan_bytes(kept, names) != []
    removed, _ = scrub_annotation(af.MAKERS[kind](), kind, KEYS, from_mapping({"wsi": {"annotation_text": "remove"}}))
    assert scan_bytes(removed, names + af.PLANTED + ["Tumor area"]) == []


def test_vocabulary_keeps_tissue_words_and_numbers(tmp_path):
    from phiscrub.wsi.annotations import _vocabulary_only, vocabulary

    vocab = vocabulary()
    assert _vocabulary_only("Tumor region 2, H&E 40x", vocab, "[X]") == ("Tumor region 2, H&E 40x", 0)
    assert _vocabulary_only("Bartholomew Quincey lesion", vocab, "[X]") == ("[X] lesion", 2)
    extra = tmp_path / "words.txt"
    extra.write_text("# ours\nQuincey\n")
    assert _vocabulary_only("Quincey lesion", vocabulary((str(extra),)), "[X]") == ("Quincey lesion", 0)


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic(kind):
    a = scrub_annotation(af.MAKERS[kind](), kind, KEYS, CONFIG, terms=_terms())
    b = scrub_annotation(af.MAKERS[kind](), kind, KEYS, CONFIG, terms=_terms())
    assert a[0] == b[0] and a[1] == b[1]


def _xml_geometry(data: bytes, kind: str) -> tuple[list, list, list]:
    root = ET.fromstring(data)
    if kind == "aperio_xml":
        pts = [(v.get("X"), v.get("Y"), v.get("Z")) for v in root.iter("Vertex")]
        meas = [(r.get(k)) for r in root.iter("Region") for k in ("Length", "Area", "LengthMicrons", "AreaMicrons", "Zoom", "Type")]
        classes = [(a.get("Type"), a.get("LineColor")) for a in root.iter("Annotation")]
    elif kind == "ndpa":
        pts = [(p.findtext("x"), p.findtext("y")) for p in root.iter("point")]
        meas = [root.findtext(".//ndpviewstate/" + k) for k in ("lens", "x", "y", "z", "coordformat")]
        classes = [(a.get("type"), a.get("color"), a.findtext("measuretype")) for a in root.iter("annotation")]
    else:
        pts = [(c.get("Order"), c.get("X"), c.get("Y")) for c in root.iter("Coordinate")]
        meas = [a.get("Type") for a in root.iter("Annotation")]
        classes = [a.get("PartOfGroup") for a in root.iter("Annotation")] + [g.get("Name") for g in root.iter("Group")]
    return pts, meas, classes


@pytest.mark.parametrize("kind", ["aperio_xml", "ndpa", "asap_xml"])
def test_xml_geometry_classes_measurements_exact(kind):
    src = af.MAKERS[kind]()
    out, manifest = scrub_annotation(src, kind, KEYS, CONFIG, terms=_terms())
    before, after = _xml_geometry(src, kind), _xml_geometry(out, kind)
    assert before == after
    assert len(before[0]) == len(af.VERTICES) == manifest["points"]


def test_geojson_geometry_classes_measurements_exact():
    src = json.loads(af.geojson())
    out, manifest = scrub_annotation(af.geojson(), "geojson", KEYS, CONFIG, terms=_terms())
    got = json.loads(out)
    for a, b in zip(src["features"], got["features"], strict=True):
        assert a["geometry"] == b["geometry"] and a["id"] == b["id"]
        assert a["properties"]["classification"] == b["properties"]["classification"]
        assert a["properties"]["measurements"] == b["properties"]["measurements"]
    assert manifest["points"] == len(af.VERTICES) + 1 + 1  # closed ring + one point
    props = got["features"][0]["properties"]
    assert "Author" not in props["metadata"] and "CreatedAt" not in props["metadata"]
    assert "user" not in got["features"][1]["properties"]


def test_cleaning_keeps_the_medical_words():
    out, manifest = scrub_annotation(af.ndpa(), "ndpa", KEYS, CONFIG, terms=_terms())
    root = ET.fromstring(out)
    assert root.findtext(".//title").startswith("Tumor area")
    assert "Margin checked by" in root.findtext(".//details")
    assert manifest["cleaned"]["title"] == 1 and manifest["spans_replaced"] >= 4
    assert root.find(".//creator") is None and root.find(".//date") is None


def test_aperio_keeps_its_declared_encoding():
    out, _ = scrub_annotation(af.aperio_xml(), "aperio_xml", KEYS, CONFIG)
    assert out.startswith(b"<?xml version='1.0' encoding='iso-8859-1'?>")
    assert b"<!--" not in out  # comments are dropped, with what they held


@pytest.mark.parametrize("kind,data", [
    ("aperio_xml", b"<Annotations><Annotation"),
    ("ndpa", b"<annotations><ndpviewstate>"),
    ("asap_xml", b"<Other/>"),
    ("geojson", b'{"type": "FeatureCollection", "features": [1]}'),
    ("geojson", b"\xff\xfe{"),
])
def test_corrupt_input_is_typed(kind, data):
    with pytest.raises(CorruptFile) as e:
        scrub_annotation(data, kind, KEYS, CONFIG)
    assert "\n" not in str(e.value)


def test_entities_and_dtd_refused():
    bomb = b"""<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<ASAP_Annotations><Annotations><Annotation Name="&x;"/></Annotations></ASAP_Annotations>"""
    with pytest.raises(CorruptFile):
        scrub_annotation(bomb, "asap_xml", KEYS, CONFIG)


def test_unknown_kind_is_typed():
    with pytest.raises(UnsupportedInput):
        scrub_annotation(b"{}", "svs", KEYS, CONFIG)
