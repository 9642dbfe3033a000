"""Many small DICOM files quickly: one CT template, varied per patient, study and instance,
each with planted identifying values (names, IDs, accession, institution, physician) and a
file name that holds the patient's name, as archives do."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file

_ROOT = "1.2.826.0.1.3680043.10.543"  # a fixed root: the corpus is the same every time


@dataclass
class Corpus:
    files: list[Path] = field(default_factory=list)
    planted: list[str] = field(default_factory=list)
    studies: dict[str, list[Path]] = field(default_factory=dict)  # StudyInstanceUID -> files


def make_corpus(root: Path, n: int, per_study: int = 20, seed: int = 0) -> Corpus:
    """Written from one serialised template whose placeholders are all fixed-width, so a
    file is a few byte replacements (2,000 files in well under a second)."""
    import io
    import warnings

    assert 0 <= seed <= 8 and n <= 999_999  # fixed widths: seed + 1 is one digit
    with warnings.catch_warnings():  # the placeholders are not valid UIDs; what is written is
        warnings.simplefilter("ignore")
        tmpl = dcmread(get_testdata_file("CT_small.dcm"))
        tmpl.PixelData = tmpl.PixelData[: 16 * 16 * 2]
        tmpl.Rows = tmpl.Columns = 16
        tmpl.PatientName = "Quorvath@S1@@^Annelise@S1@@"
        tmpl.PatientID = "MRN@S2@@@@@"
        tmpl.AccessionNumber = "ACC@S2@@@@@"
        tmpl.InstitutionName = "Xylophage Clinic @S1@@"
        tmpl.ReferringPhysicianName = "Mcgillicuddy@S1@@^Horatio"
        tmpl.StudyInstanceUID = f"{_ROOT}.@SU@@@"
        tmpl.SeriesInstanceUID = f"{_ROOT}.@SU@@@.1"
        tmpl.SOPInstanceUID = f"{_ROOT}.@SU@@@.1.@I@@@@@"
        tmpl.file_meta.MediaStorageSOPInstanceUID = tmpl.SOPInstanceUID
        tmpl.InstanceNumber = 1
        buf = io.BytesIO()
        tmpl.save_as(buf, enforce_file_format=True)
    blob = buf.getvalue()
    out = Corpus()
    for i in range(n):
        s = i // per_study
        s1, s2, su = f"{seed}{s:04d}", f"{seed}{s:07d}", f"{seed + 1}{s:05d}"
        data = (blob.replace(b"@SU@@@", su.encode()).replace(b"@I@@@@@", f"1{i:06d}".encode())
                .replace(b"@S1@@", s1.encode()).replace(b"@S2@@@@@", s2.encode()))
        last, first = f"Quorvath{s1}", f"Annelise{s1}"
        folder = root / f"{last}_{first}"
        if i % per_study == 0:
            folder.mkdir(parents=True, exist_ok=True)
            out.planted += [last, first, f"MRN{s2}", f"ACC{s2}", f"Xylophage Clinic {s1}", f"Mcgillicuddy{s1}"]
        path = folder / f"{last}_{i:06d}.dcm"
        path.write_bytes(data)
        out.files.append(path)
        out.studies.setdefault(f"{_ROOT}.{su}", []).append(path)
    return out


def tree(root: Path) -> dict[str, bytes]:
    """Every output file (the job's state folder aside) by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".phiscrub" not in p.relative_to(root).parts}
