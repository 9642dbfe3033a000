"""One rule for a slide's dates and times (wsi/dates.py), offsets keyed on the patient
(wsi/patients.py), the TIFF tag kept-list and device identity.

The Aperio case is the one real scanners write and the factories once did not: TIFF
DateTime repeats the description's Date and Time. Under the old per-field rules the
description's time was removed while DateTime kept it, and the verifier quarantined every
such slide."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
import tifffile
from pydicom.dataset import Dataset

from phiscrub.dicom.identity import patient_identity
from phiscrub.errors import ConfigError
from phiscrub.keys import KeyRing
from phiscrub.policy.config import from_mapping
from phiscrub.wsi.registry import SlideJob
from phiscrub.wsi.slide import deidentify_slide
from phiscrub.wsi.tiffscrub import GENERIC_TAGS, kept_tags
from tests.wsi.leak import scan_tree
from tests.wsi.slide_factory import make_aperio, make_leica, make_philips

KEYS = KeyRing(b"slide-date-key-0123456789")
WHEN = "2019:06:02 14:07:31"  # as a scanner writes TIFF DateTime
MODIFIED = ["retain_longitudinal_modified_dates"]


def job(options: list[str] | None = None, **wsi) -> SlideJob:
    doc: dict = {"wsi": wsi} if wsi else {}
    if options is not None:
        doc["options"] = options
    return SlideJob(KEYS, from_mapping(doc))


def only(folder: Path) -> Path:
    files = [p for p in folder.iterdir() if p.is_file()]
    assert len(files) == 1
    return files[0]


def aperio_dates(path: Path) -> tuple[str | None, dict[str, str]]:
    """(TIFF DateTime of the first directory, the description's pairs)."""
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        tag = page.tags.get(306)
        pairs = dict(p.split(" = ", 1) for p in page.description.split("|")[1:] if " = " in p)
        return (tag.value if tag else None), pairs


@pytest.fixture(scope="module")
def scanner_svs(tmp_path_factory) -> Path:
    return make_aperio(tmp_path_factory.mktemp("svs") / "scan.svs", when=WHEN).path


def test_aperio_datetime_repeating_the_description_time_is_deidentified(scanner_svs, tmp_path):
    planted = make_aperio(tmp_path / "src.svs", when=WHEN)
    m = deidentify_slide(planted.path, tmp_path / "out", job())  # default: modified dates
    out = only(tmp_path / "out")
    stamp, pairs = aperio_dates(out)
    src_day = dt.datetime.strptime(WHEN, "%Y:%m:%d %H:%M:%S")
    new = dt.datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S")
    assert new.time() == src_day.time() and new.date() != src_day.date()  # the time of day is kept, as DICOM's TM
    # the description's Date moved with DateTime, by the one offset, and its Time is DateTime's
    assert dt.datetime.strptime(pairs["Date"], "%m/%d/%y").date() == new.date()
    assert pairs["Time"] == WHEN[11:]
    assert m.fields["tiff.DateTime"] == "shift_date" and m.fields["aperio.Date"] == "shift_date"
    assert m.fields["aperio.Time"] == "keep"
    assert scan_tree(tmp_path / "out", planted.values) == {}


def test_no_longitudinal_option_removes_every_date_and_time(tmp_path):
    planted = make_aperio(tmp_path / "src.svs", when=WHEN)
    deidentify_slide(planted.path, tmp_path / "out", job(options=["clean_descriptors"]))
    out = only(tmp_path / "out")
    stamp, pairs = aperio_dates(out)
    assert stamp is None and "Date" not in pairs and "Time" not in pairs
    assert scan_tree(tmp_path / "out", planted.values + planted.times + [WHEN[:10], WHEN[11:]]) == {}


def test_full_dates_keep_dates_and_times(tmp_path):
    planted = make_aperio(tmp_path / "src.svs", when=WHEN)
    deidentify_slide(planted.path, tmp_path / "out", job(options=["retain_longitudinal_full_dates"]))
    stamp, pairs = aperio_dates(only(tmp_path / "out"))
    assert stamp == WHEN and pairs["Time"] == WHEN[11:] and pairs["Date"] == "06/02/19"


def philips_acquired(path: Path) -> dt.date:
    with tifffile.TiffFile(path) as tf:
        m = re.search(r'Name="DICOM_ACQUISITION_DATETIME"[^>]*>(\d{8})', tf.pages[0].description)
    assert m, "the acquisition date-time is gone"
    return dt.datetime.strptime(m.group(1), "%Y%m%d").date()


def test_two_slides_of_one_patient_keep_their_interval(tmp_path):
    """Philips names the patient: both slides move by that patient's offset, the one the
    DICOM path gives the same PatientID, so slides and studies of one patient agree."""
    first = make_philips(tmp_path / "a.tiff", patient="MRN-SAME-77", acquired="20210314134512.000000")
    second = make_philips(tmp_path / "b.tiff", patient="MRN-SAME-77", acquired="20210401090000.000000")
    other = make_philips(tmp_path / "c.tiff", patient="MRN-OTHER-78", acquired="20210314134512.000000")
    got = {}
    for name, planted in (("a", first), ("b", second), ("c", other)):
        m = deidentify_slide(planted.path, tmp_path / name, job())
        assert m.fields["<date offset>"] == "patient field"
        got[name] = philips_acquired(only(tmp_path / name))
        assert scan_tree(tmp_path / name, planted.values) == {}
    assert (got["b"] - got["a"]).days == 18  # 2021-03-14 -> 2021-04-01
    ds = Dataset()
    ds.PatientID = "MRN-SAME-77"
    offset = KEYS.date_offset(patient_identity(ds), -3650, -1)
    assert got["a"] == dt.date(2021, 3, 14) + dt.timedelta(days=offset)
    assert got["c"] != got["a"]  # another patient, another offset


def test_a_csv_maps_slides_to_their_patient(tmp_path):
    a = make_aperio(tmp_path / "S-001.svs", when="2020:01:10 08:00:00")
    b = make_aperio(tmp_path / "S-002.svs", when="2020:03:01 08:00:00")
    csv = tmp_path / "patients.csv"
    csv.write_text("slide,patient,issuer\nS-001.svs,MRN-CSV-1,HOSP\nS-002,MRN-CSV-1,HOSP\n")
    days = []
    for planted, name in ((a, "a"), (b, "b")):
        m = deidentify_slide(planted.path, tmp_path / name, job(patients=str(csv)))
        assert m.fields["<date offset>"] == "mapping"
        stamp, _ = aperio_dates(only(tmp_path / name))
        days.append(dt.datetime.strptime(stamp, "%Y:%m:%d %H:%M:%S").date())
    assert (days[1] - days[0]).days == 51
    ds = Dataset()
    ds.PatientID, ds.IssuerOfPatientID = "MRN-CSV-1", "HOSP"
    assert days[0] == dt.date(2020, 1, 10) + dt.timedelta(days=KEYS.date_offset(patient_identity(ds), -3650, -1))


def test_a_bad_patient_csv_is_refused_without_its_values(tmp_path):
    csv = tmp_path / "p.csv"
    csv.write_text("file,who\nS-1,MRN-SECRET-9\n")
    with pytest.raises(ConfigError) as e:
        job(patients=str(csv))
    assert "MRN-SECRET-9" not in str(e.value) and "slide and patient" in str(e.value)
    csv.write_text("slide,patient\nS-1,MRN-SECRET-9\nS-1,MRN-SECRET-8\n")
    with pytest.raises(ConfigError) as e:
        job(patients=str(csv))
    assert "SECRET" not in str(e.value) and "line 3" in str(e.value)


def leica_device(path: Path) -> dict[str, str]:
    with tifffile.TiffFile(path) as tf:
        m = re.search(r"<device ([^>]*)/?>", tf.pages[0].description)
    assert m
    return dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))


def test_a_serial_in_the_scn_device_element_follows_retain_device_identity(tmp_path):
    planted = make_leica(tmp_path / "s.scn", model="Leica SCN400;SN-8844221")
    deidentify_slide(planted.path, tmp_path / "out", job())
    dev = leica_device(only(tmp_path / "out"))
    assert "8844221" not in dev.get("model", "") and dev["model"].startswith("Leica SCN400")  # the model stays
    assert "serialNumber" not in dev
    assert scan_tree(tmp_path / "out", planted.values + ["SN-8844221"]) == {}
    deidentify_slide(planted.path, tmp_path / "kept", job(options=[*MODIFIED, "retain_device_identity"]))
    kept = leica_device(only(tmp_path / "kept"))
    assert kept["model"] == "Leica SCN400;SN-8844221"


def test_only_listed_tiff_tags_survive(scanner_svs, tmp_path):
    """A kept-list: every tag in every output directory is structural (tiff_tags.yaml), one
    generic_tiff.yaml treats, or the vendor's own; the factory's TargetPrinter (337) goes."""
    deidentify_slide(scanner_svs, tmp_path, job())
    allowed = kept_tags() | set(GENERIC_TAGS)
    with tifffile.TiffFile(only(tmp_path)) as tf:
        seen = {tag.code for page in tf.pages for tag in page.tags}
    assert 337 not in seen
    assert seen <= allowed, sorted(seen - allowed)


def test_an_mrxs_slide_takes_its_patients_offset_from_the_csv(tmp_path):
    import openslide

    from tests.wsi.mrxs_factory import CREATED, make_mrxs

    src = make_mrxs(tmp_path / "src", name="S-009")
    csv = tmp_path / "patients.csv"
    csv.write_text("slide,patient\nS-009,MRN-MRXS-5\n")
    deidentify_slide(src, tmp_path / "out", job(patients=str(csv)))
    out = next((tmp_path / "out").glob("*.mrxs"))
    with openslide.OpenSlide(str(out)) as s:
        got = s.properties["mirax.GENERAL.SLIDE_CREATIONDATETIME"]
    ds = Dataset()
    ds.PatientID = "MRN-MRXS-5"
    want = dt.datetime.strptime(CREATED[:10], "%Y.%m.%d").date() + dt.timedelta(
        days=KEYS.date_offset(patient_identity(ds), -3650, -1))
    assert got == want.strftime("%Y.%m.%d") + CREATED[10:]
