"""DICOM WSI through the DICOM header path: specimen description cleaned, identifiers keyed
consistently, LABEL/OVERVIEW instances per config.wsi, bulk annotations cleaned with geometry kept."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from phiscrub.errors import DroppedByPolicy
from phiscrub.keys import KeyRing
from phiscrub.policy.config import from_mapping
from phiscrub.transform import transform_dicom
from tests.wsi import dicom_wsi_factory as f
from tests.wsi.leak import scan_bytes

KEYS = KeyRing(b"test-key-0123456789abcdef0123")
CLEANING = {"options": ["clean_descriptors", "clean_structured_content", "retain_longitudinal_modified_dates"]}


def _run(data: bytes, doc: dict | None = None):
    cfg = from_mapping(doc or {})
    out = transform_dicom(data, cfg, KEYS, cfg.policy.digest())
    return out, pydicom.dcmread(io.BytesIO(out.data))


@pytest.mark.parametrize("doc", [{}, CLEANING], ids=["basic", "clean-options"])
@pytest.mark.parametrize("make", [f.volume, f.bulk_annotations, lambda: f.associated("LABEL")], ids=["volume", "ann", "label"])
def test_no_planted_value_in_any_output_byte(make, doc):
    doc = {**doc, "wsi": {"label": "blank", "macro": "blank"}}
    out, ds = _run(make(), doc)
    assert scan_bytes(out.data, f.PLANTED) == []
    assert scan_bytes(repr(out.manifest).encode(), f.PLANTED) == []
    assert ds.file_meta.TransferSyntaxUID  # round-trips through pydicom


def test_specimen_description_cleaned_and_identifiers_keyed():
    _, vol = _run(f.volume(), CLEANING)
    _, ann = _run(f.bulk_annotations(), CLEANING)
    spec = vol.SpecimenDescriptionSequence[0]
    # pseudonyms, the same in every instance, never the dummy
    assert spec.SpecimenIdentifier == ann.SpecimenDescriptionSequence[0].SpecimenIdentifier != "ANONYMIZED"
    assert vol.ContainerIdentifier == ann.ContainerIdentifier == KEYS.value_pseudonym(f.CONTAINER, 12)
    assert spec.SpecimenShortDescription.endswith("colon biopsy")  # cleaned, medical words kept
    items = spec.SpecimenPreparationSequence[0].SpecimenPreparationStepContentItemSequence
    texts = [str(i.get("TextValue", "")) for i in items]
    assert texts[-1].startswith("H&E by")
    assert "Quincey" not in str(vol.get("LabelText", "")) and "8473" not in str(vol.get("LabelText", ""))  # cleaned (Annex E: C)
    assert not vol.get("BarcodeValue")


def test_basic_profile_empties_preparation_steps():
    _, vol = _run(f.volume())
    spec = vol.SpecimenDescriptionSequence[0]
    assert len(spec.get("SpecimenPreparationSequence", [])) == 0
    assert "SpecimenShortDescription" not in spec and "SpecimenDetailedDescription" not in spec


def test_volume_pixels_untouched():
    src = pydicom.dcmread(io.BytesIO(f.volume()))
    _, out = _run(f.volume())
    assert out.PixelData == src.PixelData and out.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID


@pytest.mark.parametrize("kind,setting", [("LABEL", "label"), ("OVERVIEW", "macro")])
def test_remove_drops_the_instance(kind, setting):
    with pytest.raises(DroppedByPolicy) as e:
        _run(f.associated(kind), {"wsi": {setting: "remove"}})
    assert str(e.value) in ("label image removed by policy", "overview image removed by policy")


@pytest.mark.parametrize("kind,setting,action", [
    ("LABEL", "label", "blank"), ("OVERVIEW", "macro", "blank"), ("OVERVIEW", "macro", "redact"),
])
def test_blank_zeroes_pixels_with_a_truthful_syntax(kind, setting, action):
    out, ds = _run(f.associated(kind), {"wsi": {setting: action}})
    src = pydicom.dcmread(io.BytesIO(f.associated(kind)))
    px = ds.pixel_array
    assert px.shape == src.pixel_array.shape and int(px.max()) == 0
    assert ds.file_meta.TransferSyntaxUID != src.file_meta.TransferSyntaxUID  # re-encoded, said so
    assert ds.LossyImageCompression == "01"  # once lossy, always lossy
    assert ds.BurnedInAnnotation == "NO"
    assert out.manifest["wsi_associated"]["action"] == "blanked"


def test_replace_shows_the_pseudonym_label():
    out, ds = _run(f.associated("LABEL"), {"wsi": {"label": "replace"}})
    px = ds.pixel_array
    assert px.max() == 255 and px.min() == 0 and (px == 255).mean() > 0.5  # white label, dark text
    assert ds.ContainerIdentifier == KEYS.value_pseudonym(f.CONTAINER, 12)
    syntax = str(ds.file_meta.TransferSyntaxUID)
    assert out.manifest["wsi_associated"] == {"role": "label", "action": "replaced", "transfer_syntax": syntax, "notes": []}


def test_deterministic():
    a, _ = _run(f.associated("LABEL"), {"wsi": {"label": "replace"}})
    b, _ = _run(f.associated("LABEL"), {"wsi": {"label": "replace"}})
    assert a.data == b.data


@pytest.mark.parametrize("doc", [{}, CLEANING], ids=["basic", "clean-options"])
def test_bulk_annotations_geometry_and_classes_kept(doc):
    src = pydicom.dcmread(io.BytesIO(f.bulk_annotations()))
    _, ds = _run(f.bulk_annotations(), doc)
    g, s = ds.AnnotationGroupSequence[0], src.AnnotationGroupSequence[0]
    assert np.array_equal(np.frombuffer(g.PointCoordinatesData, np.float32), f.POLYGON)
    assert g.LongPrimitivePointIndexList == s.LongPrimitivePointIndexList
    assert g.GraphicType == s.GraphicType and g.NumberOfAnnotations == 1
    assert g.AnnotationPropertyTypeCodeSequence[0].CodeValue == "108369006"
    vals = g.MeasurementsSequence[0].MeasurementValuesSequence[0].FloatingPointValues
    assert np.array_equal(np.frombuffer(vals, np.float32), f.AREA)
    assert g.AnnotationGroupUID != s.AnnotationGroupUID  # remapped like every instance UID
    assert ds.ContentLabel == "ANONYMIZED" and ds.ContentCreatorName != f.PREPARER
    if doc:
        assert g.AnnotationGroupLabel.startswith("Tumor") and "outlined for" in g.AnnotationGroupDescription
    else:
        assert "AnnotationGroupDescription" not in g and g.AnnotationGroupLabel == "ANONYMIZED"


def test_supplement_never_overrides_the_standard():
    from phiscrub.policy import annex_e

    rows = annex_e.table()
    assert rows["00700084"].basic == "Z/D"  # Content Creator's Name: the standard's row
    assert rows["00700080"].basic == "D" and rows["006a0006"].options
