"""The verifier's own choice of what identifies, and how it matches: strict enough to catch a
value the policy forgot, careful enough not to fail a clean output.

Each test builds a source, writes an 'output' by hand (the transform is not involved, so a
blind spot of the transform cannot hide here) and asks the per-item gate, verify_output,
for its reasons. Every test runs both ways: a clean output passes, one planted value fails.
"""

from __future__ import annotations

import copy
import io

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from phiscrub.pipeline.verify import collect_probe, verify_output
from phiscrub.policy.config import from_mapping
from tests.conftest import TEST_FILES

CT = "ct-image"


def _source() -> Dataset:
    ds = dcmread(TEST_FILES / "CT_small.dcm")
    ds.PatientName = "Quorvath^Annabel"
    ds.PatientID = "MRN55501234"
    ds.StudyID = "1"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20210304"
    ds.InstanceCreationDate = "20040119"
    ds.PatientBirthDate = "19520314"
    ds.StationName = "000000000"
    ds.OperatorsName = "CT"
    ds.StudyTime = "000000"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    return ds


def _output(src: Dataset, **changes) -> bytes:
    """A de-identified output of the source, written by hand: its codes and measurements,
    new UIDs, every date moved by -151 days, no name or ID; and what a test puts back."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    for kw in ("SOPClassUID", "Modality", "ImageType", "Rows", "Columns", "SliceThickness", "KVP",
               "Manufacturer", "SeriesNumber", "InstanceNumber", "PatientSex"):
        if kw in src:
            setattr(ds, kw, src[kw].value)
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "2.25.11", "2.25.12", "2.25.13"
    ds.FrameOfReferenceUID = "2.25.14"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20201004"
    ds.InstanceCreationDate = "20030821"
    ds.PatientName, ds.PatientID = "PS^ABCDEFGH", "PSABCDEFGH"
    ds.PatientIdentityRemoved = "YES"
    for kw, value in changes.items():
        setattr(ds, kw, value)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _reasons(src: Dataset, data: bytes, options: list[str] | None = None, **cfg) -> list[str]:
    config = from_mapping({"options": ["retain_longitudinal_modified_dates"] if options is None else options, **cfg})
    return verify_output(data, "PSX/2.25.1/2.25.2/2.25.3.dcm", collect_probe(src, config.policy, CT))


def test_a_clean_output_passes_with_short_and_placeholder_values_left_in_it() -> None:
    """'1', 'CT', '000000000' and the time '000000' say nothing of anyone: an output that
    still holds them (as counts, codes, dummies) is clean."""
    src = _source()
    assert _reasons(src, _output(src)) == []
    assert _reasons(src, _output(src, StudyID="1", OperatorsName="CT", StationName="000000000",
                                 StudyTime="000000", SeriesNumber="1")) == []


def test_a_name_part_is_found_as_a_word_not_inside_another() -> None:
    src = _source()
    src.ReferringPhysicianName = "Mary^Smith"
    assert _reasons(src, _output(src, ImageComments="ORIGINAL PRIMARY summary")) == []
    reasons = _reasons(src, _output(src, ImageComments="seen by Mary today"))
    assert reasons == ["a source name still present in the header, text field ImageComments (0020,4000)"]


def test_an_id_is_not_found_inside_a_longer_number_a_decimal_or_a_uid() -> None:
    src = _source()
    src.PatientID = "4471923"
    clean = _output(src, ImageComments="dose 0.4471923 ref 44719235", FrameOfReferenceUID="2.25.1444719231")
    assert _reasons(src, clean) == []
    assert _reasons(src, _output(src, ImageComments="MRN 4471923")) == [
        "a source ID still present in the header, text field ImageComments (0020,4000)"]


def test_an_attribute_the_table_does_not_list_is_looked_at_all_the_same() -> None:
    """Independence: the probe takes every PN, ID and module text itself, so a name the
    transform kept in an attribute its table does not list is found."""
    src = _source()
    assert _reasons(src, _output(src, ReceiveCoilName="coil A")) == []
    assert _reasons(src, _output(src, ReceiveCoilName="Quorvath")) == [
        "a source name still present in the header, text field ReceiveCoilName (0018,1250)"]


def _days_after(d: str, n: int) -> str:
    from datetime import date, timedelta

    return (date(int(d[:4]), int(d[4:6]), int(d[6:8])) + timedelta(days=n)).strftime("%Y%m%d")


def test_dates_are_judged_by_place() -> None:
    """Every date of the output moved by the same offset (-151 days). A shifted date may
    land on another of the source's dates: that is the shift. A date left where it was, a
    source date that is not the shift the others took, or one written where the source had
    none, is a leak."""
    src = _source()
    assert _reasons(src, _output(src)) == []
    landing = _source()
    landing.InstanceCreationDate = _days_after("20210304", 151)  # shifted, it becomes the study date
    assert _reasons(landing, _output(landing, InstanceCreationDate="20210304")) == []
    line = "a source date still present in the header, date field InstanceCreationDate (0008,0012)"
    assert _reasons(src, _output(src, InstanceCreationDate="20040119")) == [line]  # left where it was
    assert _reasons(src, _output(src, InstanceCreationDate="20210304")) == [line]  # the study date, unshifted
    assert _reasons(src, _output(src, DateOfLastCalibration="19520314")) == [
        "a source date still present in the header, date field DateOfLastCalibration (0018,1200)"]
    assert _reasons(src, _output(src, ImageComments="born 14.03.1952")) == [
        "a source date still present in the header, text field ImageComments (0020,4000)"]


def test_dates_stay_under_full_dates_and_code_system_dates_are_no_ones() -> None:
    src = _source()
    src.ContextGroupVersion = "20040119000000"
    kept = _output(src, StudyDate="20210304", InstanceCreationDate="20040119", ContextGroupVersion="20040119000000")
    assert _reasons(src, kept, ["retain_longitudinal_full_dates"]) == []
    assert _reasons(src, _output(src, ContextGroupVersion="20040119000000")) == []


def test_times_are_looked_for_only_where_no_date_option_keeps_them() -> None:
    src = _source()
    src.AcquisitionTime = "083012.500"
    out = _output(src, AcquisitionTime="083012.500")
    assert _reasons(src, out) == []  # retain_longitudinal_modified_dates keeps times
    assert _reasons(src, out, options=[]) == [
        "a source time still present in the header, time field AcquisitionTime (0008,0032)"]


def test_a_value_kept_on_purpose_is_excused_and_only_that_value() -> None:
    """retain_device_identity keeps the serial on purpose; an override that keeps a comment
    keeps the comment, not the patient's name written inside it."""
    src = _source()
    src.DeviceSerialNumber = "SN-88412931"
    out = _output(src, DeviceSerialNumber="SN-88412931")
    assert _reasons(src, out, ["retain_longitudinal_modified_dates", "retain_device_identity"]) == []
    assert _reasons(src, out) == [
        "a source ID still present in the header, text field DeviceSerialNumber (0018,1000)"]
    src.ImageComments = "Seen by Quorvath today"
    out = _output(src, ImageComments="Seen by Quorvath today")
    reasons = _reasons(src, out, tags=[{"select": "ImageComments", "action": "keep"}])
    assert reasons == ["a source name still present in the header, text field ImageComments (0020,4000)"]


def test_codes_and_equipment_words_the_output_keeps_excuse_what_they_hold() -> None:
    """A template's placeholder name ('Last Name^First Name') beside code meanings saying
    'Last Name'; an institution called like its manufacturer. Neither is a leak where the
    source keeps the code or the manufacturer; the same words elsewhere are."""
    src = _source()
    src.PatientName = "Last Name^First Name"
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "IHE.04", "99TEST", "Last Name"
    src.ConceptNameCodeSequence = Sequence([code])
    src.InstitutionName = "TOSHIBA"
    src.Manufacturer = "TOSHIBA_MEC"
    assert _reasons(src, _output(src, ConceptNameCodeSequence=copy.deepcopy(src.ConceptNameCodeSequence))) == []
    src.OperatorsName = "Quorvath^Annabel"
    assert _reasons(src, _output(src, ReceiveCoilName="Annabel")) == [
        "a source name still present in the header, text field ReceiveCoilName (0018,1250)"]


def test_values_stored_as_un_and_in_private_elements_are_collected() -> None:
    """A name stored with VR UN is read by its dictionary VR; a private PN is a name; the
    text of a private element is looked for too."""
    src = _source()
    src._dict[Tag(0x00081070)] = RawDataElement(Tag(0x00081070), "UN", 16, b"Brannigan^Zelda ", 0, False, True)
    block = src.private_block(0x0009, "ACME 1.0", create=True)
    block.add_new(0x10, "PN", "Okafor^Bisi")
    block.add_new(0x11, "LO", "ward 7 east annex")
    assert _reasons(src, _output(src)) == []
    for kw, value in (("ReceiveCoilName", "Brannigan"), ("ReceiveCoilName", "Okafor"),
                      ("ImageComments", "ward 7 east annex")):
        reasons = _reasons(src, _output(src, **{kw: value}))
        assert len(reasons) == 1 and f"field {kw} (" in reasons[0], (value, reasons)


def test_a_value_in_another_character_set_is_found() -> None:
    """A Japanese name (ISO 2022 IR 87) written back in the source's own encoding: found in
    the bytes as the source wrote them and in the decoded field."""
    src = _source()
    src.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    src.PatientName = "Yamada^Tarou=山田^太郎"
    assert _reasons(src, _output(src)) == []
    reasons = _reasons(src, _output(src, SpecificCharacterSet=["", "ISO 2022 IR 87"], ReceiveCoilName="山田"))
    assert reasons == ["a source name still present in the header, text field ReceiveCoilName (0018,1250)"], reasons


def test_a_reason_names_the_place_never_the_value() -> None:
    src = _source()
    reasons = _reasons(src, _output(src, StudyDescription="follow-up for Quorvath, MRN55501234"))
    assert reasons == ["a source name still present in the header, text field StudyDescription (0008,1030)"]
    assert all("quorvath" not in r.lower() and "55501234" not in r for r in reasons)
