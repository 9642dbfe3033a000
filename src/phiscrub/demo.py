"""Synthetic studies with planted PHI, for the demo, the tests and the benchmark.

Pixel data and image attributes come from pydicom's bundled CT and MR test files (real
images, real encodings); every identifying value is planted, so any trace of one in an
output is a leak we can name.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR


@dataclass
class Planted:
    """Every planted identifying value, to scan outputs for."""

    values: list[str] = field(default_factory=list)

    def add(self, *vals: str) -> None:
        self.values.extend(vals)


@dataclass
class Patient:
    name: str = "Davidson^Douglas^Edward"
    pid: str = "MRN4471923"
    birth: str = "19520314"
    accession: str = "ACC99812"
    address: str = "42 Wallaby Way, Sydney"
    phone: str = "555-867-5309"
    institution: str = "St Elsewhere General Hospital"
    physician: str = "Whitmore^Jane"
    operator: str = "Okonkwo^Chidi"
    study_date: str = "20210304"
    other_id: str = "OTHERID77812"
    station: str = "CTSTATION-ROOM7"
    serial: str = "SN-88412931"

    def planted(self) -> list[str]:
        parts = [p for p in self.name.split("^") + self.physician.split("^")
                 + self.operator.split("^") if p]
        return [self.name, self.pid, self.birth, self.accession, self.address, self.phone,
                self.institution, self.physician, self.operator, self.other_id,
                self.station, self.serial, self.study_date, *parts]


def _plant_header(ds: Dataset, p: Patient, study_uid: str, series_uid: str, sop_uid: str,
                  frame_uid: str | None = None) -> None:
    ds.PatientName = p.name
    ds.PatientID = p.pid
    ds.PatientBirthDate = p.birth
    ds.PatientAddress = p.address
    ds.PatientTelephoneNumbers = p.phone
    ds.PatientSex = "M"
    ds.PatientAge = "069Y"
    ds.AccessionNumber = p.accession
    ds.InstitutionName = p.institution
    ds.InstitutionAddress = "1 Hospital Road, " + p.address.split(", ")[-1]
    ds.ReferringPhysicianName = p.physician
    ds.OperatorsName = p.operator
    ds.StationName = p.station
    ds.DeviceSerialNumber = p.serial
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = p.study_date
    ds.StudyTime = "101500"
    ds.StudyDescription = f"CT chest for {p.name.split('^')[1]} {p.name.split('^')[0]}"
    ds.SeriesDescription = f"Axial 5mm {p.pid}"
    ds.ImageComments = f"Patient {p.name.replace('^', ' ')} seen {p.study_date}, call {p.phone}"
    ds.AdditionalPatientHistory = f"Referred by Dr {p.physician.split('^')[0]}; MRN {p.pid}"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = sop_uid
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.FrameOfReferenceUID = frame_uid or generate_uid()
    other = Dataset()
    other.PatientID = p.other_id
    other.IssuerOfPatientID = p.institution
    ds.OtherPatientIDsSequence = Sequence([other])
    req = Dataset()
    req.AccessionNumber = p.accession
    req.RequestedProcedureID = p.accession + "RP"
    inner = Dataset()
    inner.PersonName = p.physician
    inner.InstitutionName = p.institution
    req.ContentSequence = Sequence([inner])
    ds.RequestAttributesSequence = Sequence([req])
    block = ds.private_block(0x0019, "ACME PRIVATE", create=True)
    block.add_new(0x10, "LO", p.name)
    block.add_new(0x11, "SH", p.pid)
    block.add_new(0x12, "LT", f"Birth {p.birth} addr {p.address}")
    psq = Dataset()
    psq.add_new(0x00100010, "PN", p.name)
    block.add_new(0x13, "SQ", Sequence([psq]))


def make_study(root: Path, patient: Patient | None = None, n_ct: int = 3, n_mr: int = 2,
               folder: str | None = None) -> tuple[Planted, list[Path]]:
    """Writes one study (CT series, MR series, and an SR that cites the CT images)."""
    p = patient or Patient()
    out = root / (folder or f"CT_for_{p.name.split('^')[1]}_{p.name.split('^')[0]}")
    out.mkdir(parents=True, exist_ok=True)
    planted = Planted()
    planted.add(*p.planted())
    study_uid = generate_uid()
    frame_uid = generate_uid()
    planted.add(study_uid, frame_uid)
    paths: list[Path] = []
    cited: list[tuple[str, str]] = []
    ct_series = generate_uid()
    mr_series = generate_uid()
    planted.add(ct_series, mr_series)
    for kind, n, series in (("CT_small.dcm", n_ct, ct_series), ("MR_small.dcm", n_mr, mr_series)):
        tmpl = dcmread(get_testdata_file(kind))
        for i in range(n):
            ds = copy.deepcopy(tmpl)
            sop = generate_uid()
            planted.add(sop)
            _plant_header(ds, p, study_uid, series, sop, frame_uid)
            ds.InstanceNumber = i + 1
            if kind.startswith("CT"):
                cited.append((str(ds.SOPClassUID), sop))
            path = out / f"{p.name.split('^')[0]}_{kind[:2]}_{i + 1:03d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    paths.append(_make_sr(out, p, study_uid, ct_series, cited, planted))
    return planted, paths


def _make_sr(out: Path, p: Patient, study_uid: str, ct_series: str, cited, planted: Planted) -> Path:
    tmpl = dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    ds = Dataset()
    ds.file_meta = copy.deepcopy(tmpl.file_meta)
    ds.file_meta.MediaStorageSOPClassUID = SR_CLASS
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID = SR_CLASS
    sop, series = generate_uid(), generate_uid()
    planted.add(sop, series)
    ds.Modality = "SR"
    ds.SeriesNumber = 99
    ds.InstanceNumber = 1
    ds.Manufacturer = "phiscrub demo"
    ds.ValueType = "CONTAINER"
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.ContentTime = "103000"
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PerformedProcedureCodeSequence = Sequence()
    name = Dataset()
    name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = "18748-4", "LN", "Diagnostic Imaging Report"
    ds.ConceptNameCodeSequence = Sequence([name])
    _plant_header(ds, p, study_uid, series, sop)
    del ds.FrameOfReferenceUID
    text = Dataset()
    text.RelationshipType, text.ValueType = "CONTAINS", "TEXT"
    cn = Dataset()
    cn.CodeValue, cn.CodingSchemeDesignator, cn.CodeMeaning = "121071", "DCM", "Finding"
    text.ConceptNameCodeSequence = Sequence([cn])
    text.TextValue = (f"Small nodule in the right upper lobe. {p.name.replace('^', ' ')}, "
                      f"MRN {p.pid}, DOB 03/14/1952. Compare with prior.")
    items = [text]
    evidence_refs = []
    for cls, uid in cited:
        img = Dataset()
        img.RelationshipType, img.ValueType = "CONTAINS", "IMAGE"
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = cls, uid
        img.ReferencedSOPSequence = Sequence([ref])
        items.append(img)
        evidence_refs.append(copy.deepcopy(ref))
    ds.ContentSequence = Sequence(items)
    ser = Dataset()
    ser.SeriesInstanceUID = ct_series
    ser.ReferencedSOPSequence = Sequence(evidence_refs)
    st = Dataset()
    st.StudyInstanceUID = study_uid
    st.ReferencedSeriesSequence = Sequence([ser])
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([st])
    path = out / f"{p.name.split('^')[0]}_SR_001.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path
