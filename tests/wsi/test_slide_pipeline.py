"""Slides through the CLI and runner: detected by content (whatever the extension), named by
keyed token, audited without values; a broken slide is quarantined, the run goes on."""

from __future__ import annotations

import json
import shutil

import pytest

from phiscrub.keys import KeyRing
from phiscrub.policy.config import from_mapping
from phiscrub.wsi.registry import SlideJob
from phiscrub.wsi.slide import deidentify_slide
from tests.wsi.leak import scan_tree
from tests.wsi.slide_factory import make_aperio, make_ndpi


def test_cli_deidentifies_slides_and_quarantines_a_broken_one(cli, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    a = make_aperio(src / "Doe_Jane_biopsy.dat")  # wrong extension on purpose: content decides
    n = make_ndpi(src / "Doe_Jane.ndpi")
    (src / "Doe_Jane_broken.svs").write_bytes(a.path.read_bytes()[:5000])
    out, q = tmp_path / "out", tmp_path / "q"
    r = cli("deidentify", src, out, "--quarantine", q, "-j", "1")
    assert r.exit_code == 1  # the broken one
    slides = sorted(p.name for p in out.iterdir() if p.is_file())
    assert len(slides) == 2 and {s.rsplit(".", 1)[1] for s in slides} == {"svs", "ndpi"}
    assert scan_tree(out, a.values + n.values + ["Doe_Jane"]) == {}
    assert len(list(q.iterdir())) == 1
    audit = [json.loads(line) for line in (out / ".phiscrub" / "audit.jsonl").read_text().splitlines()]
    items = [x for x in audit if x.get("event", x.get("kind")) == "item" or "status" in x]
    assert sorted(x["status"] for x in items if "status" in x) == ["done", "done", "quarantined"]


def test_cli_in_place(cli, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    a = make_aperio(src / "Doe_Jane.svs")
    out = tmp_path / "out"
    r = cli("deidentify", src, out, "--in-place", "-j", "1")
    assert r.exit_code == 0, r.output
    assert not a.path.exists()
    assert scan_tree(out, a.values) == {}


@pytest.mark.slow
def test_tile_scan_reports_boxes_never_text(tmp_path):
    p = make_aperio(tmp_path / "s.svs")
    job = SlideJob(KeyRing(b"slide-test-key-0123456789"), from_mapping({"wsi": {"tile_scan": True, "tile_scan_levels": 1}}))
    m = deidentify_slide(p.path, tmp_path / "out", job)
    assert isinstance(m.tile_redactions, list)
    assert all(set(r) <= {"level", "action", "box", "tile", "error"} for r in m.tile_redactions)
    shutil.rmtree(tmp_path / "out")


def test_cli_mixed_pathology_folder(cli, tmp_path):
    """One run over what a pathology export holds: an MRXS slide (its data folder is part
    of the slide, not items of its own), annotation files, and a DICOM WSI series whose label
    instance the default policy drops (counted, not a failure: exit 0)."""
    from tests.wsi import annotation_factory as ann
    from tests.wsi import dicom_wsi_factory as dw
    from tests.wsi import mrxs_factory as mx

    src = tmp_path / "Quincey_Bartholomew"
    src.mkdir()
    mx.make_mrxs(src, "Quincey_slide")
    (src / "Quincey_annotations.xml").write_bytes(ann.aperio_xml())
    (src / "Quincey.geojson").write_bytes(ann.geojson())
    (src / "volume.dcm").write_bytes(dw.volume())
    (src / "label.dcm").write_bytes(dw.associated("LABEL"))
    out = tmp_path / "out"
    r = cli("deidentify", src, out, "-j", "1")
    assert r.exit_code == 0, r.output
    audit = [json.loads(line) for line in (out / ".phiscrub" / "audit.jsonl").read_text().splitlines()]
    statuses = sorted(x["status"] for x in audit if x.get("event") == "item")
    assert statuses == ["done"] * 4 + ["dropped"]  # mrxs, 2 annotations, volume; the label dropped
    assert "1 dropped by policy" in r.output
    assert scan_tree(out, mx.PLANTED + ann.PLANTED + dw.PLANTED) == {}
    import openslide

    (mrxs,) = out.glob("*.mrxs")  # published with its data folder beside it, no temporary left
    assert openslide.OpenSlide(str(mrxs)).properties["openslide.vendor"] == "mirax"
    assert not [p for p in out.iterdir() if p.name.startswith(".partial")]
    # a second run resumes: nothing is redone, the dropped label included
    r2 = cli("deidentify", src, out, "-j", "1")
    assert r2.exit_code == 0 and "5 item(s) already done" in r2.output
