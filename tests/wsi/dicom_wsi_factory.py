"""Synthetic DICOM whole-slide instances with PHI planted: a TILED_FULL volume, a LABEL and
an OVERVIEW (JPEG baseline, as scanners write them, with the label text also in a JPEG
comment so that a byte scan sees whether the old pixels survived), and a Microscopy Bulk
Simple Annotations instance. Built with pydicom (highdicom is not a dependency)."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit

VL_WSM = "1.2.840.10008.5.1.4.1.1.77.1.6"
BULK_ANN = "1.2.840.10008.5.1.4.1.1.91.1"
PATIENT = "Quincey^Bartholomew"
PATIENT_ID = "84736251"
ACCESSION = "S23-4711"
CONTAINER = "S23-4711-A1"
SPECIMEN = "S23-4711-A1-1"
PREPARER = "Vonnegut^Hildegard"
LABEL_TEXT = "Quincey B 84736251"
BARCODE = "S23-4711-BC99"
JPEG_NOTE = "LABEL Bartholomew Quincey"
PLANTED = [PATIENT, "Quincey", "Bartholomew", PATIENT_ID, ACCESSION, CONTAINER, SPECIMEN, "Vonnegut", "Hildegard",
           LABEL_TEXT, BARCODE, JPEG_NOTE, "20230405"]
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
SERIES_UID = "1.2.826.0.1.3680043.8.498.2"
FRAME_UID = "1.2.826.0.1.3680043.8.498.3"
POLYGON = np.array([10.5, 20.25, 30.0, 20.25, 30.0, 40.125, 10.5, 40.125], dtype=np.float32)
AREA = np.array([393.890625], dtype=np.float32)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _item(vtype: str, concept: Dataset, **values) -> Dataset:
    it = Dataset()
    it.ValueType = vtype
    it.ConceptNameCodeSequence = Sequence([concept])
    for k, v in values.items():
        setattr(it, k, v)
    return it


def _common(ds: Dataset, sop_class: str, number: int) -> None:
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.10.{number}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, SERIES_UID + (".9" if sop_class == BULK_ANN else "")
    ds.FrameOfReferenceUID = FRAME_UID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = PATIENT, PATIENT_ID, "19610203", "M"
    ds.AccessionNumber = ACCESSION
    ds.StudyDate, ds.StudyTime, ds.ContentDate, ds.ContentTime = "20230405", "101112", "20230405", "101500"
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 1, number
    ds.Manufacturer, ds.ReferringPhysicianName = "Synthetic", PREPARER
    ds.ContainerIdentifier = CONTAINER
    ds.IssuerOfTheContainerIdentifierSequence = Sequence()
    ds.ContainerTypeCodeSequence = Sequence([_code("433466003", "SCT", "Microscope slide")])
    spec = Dataset()
    spec.SpecimenIdentifier = SPECIMEN
    spec.SpecimenUID = "1.2.826.0.1.3680043.8.498.4"
    spec.IssuerOfTheSpecimenIdentifierSequence = Sequence()
    spec.SpecimenShortDescription = "Bartholomew Quincey colon biopsy"
    spec.SpecimenDetailedDescription = f"Received 2023-04-05 for {PATIENT_ID}, prepared by Hildegard Vonnegut"
    step = Dataset()
    step.SpecimenPreparationStepContentItemSequence = Sequence([
        _item("TEXT", _code("121041", "DCM", "Specimen Identifier"), TextValue=SPECIMEN),
        _item("CODE", _code("111701", "DCM", "Processing type"), ConceptCodeSequence=Sequence([_code("127790008", "SCT", "Staining")])),
        _item("DATETIME", _code("111702", "DCM", "DateTime of processing"), DateTime="20230405093000"),
        _item("PNAME", _code("111704", "DCM", "Processing step performer"), PersonName=PREPARER),
        _item("TEXT", _code("111703", "DCM", "Processing step description"), TextValue="H&E by Hildegard Vonnegut"),
    ])
    spec.SpecimenPreparationSequence = Sequence([step])
    ds.SpecimenDescriptionSequence = Sequence([spec])


def _meta(ds: Dataset, syntax: str) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    ds.preamble = b"\x00" * 128


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _image(ds: Dataset, image_type: str, rows: int, cols: int, frames: int) -> None:
    ds.Modality = "SM"
    ds.ImageType = ["ORIGINAL" if image_type == "VOLUME" else "DERIVED", "PRIMARY", image_type, "NONE"]
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 3, 8, 8, 7, 0
    ds.PlanarConfiguration = 0
    ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = cols * (2 if frames == 4 else 1), rows * (2 if frames == 4 else 1)
    ds.DimensionOrganizationType = "TILED_FULL"
    ds.LabelText, ds.BarcodeValue = LABEL_TEXT, BARCODE
    ds.BurnedInAnnotation = "YES" if image_type == "LABEL" else "NO"
    ds.SpecimenLabelInImage = "YES" if image_type in ("LABEL", "OVERVIEW") else "NO"
    ds.FocusMethod, ds.ExtendedDepthOfField = "AUTO", "NO"
    ds.AcquisitionDateTime = "20230405101112"
    ds.VolumetricProperties, ds.ImagedVolumeWidth, ds.ImagedVolumeHeight = "VOLUME", 10.0, 10.0


def volume() -> bytes:
    ds = Dataset()
    _common(ds, VL_WSM, 1)
    _image(ds, "VOLUME", 64, 64, 4)
    ds.PhotometricInterpretation = "RGB"
    rng = np.random.default_rng(7)
    ds.PixelData = rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8).tobytes()
    _meta(ds, ExplicitVRLittleEndian)
    return _bytes(ds)


def _jpeg_frame(rows: int, cols: int, text: str) -> bytes:
    img = np.full((rows, cols, 3), 255, np.uint8)
    cv2.putText(img, "BQ 8473", (4, rows // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    body = text.encode()
    data = bytes(buf)
    return data[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + data[2:]


def associated(kind: str) -> bytes:
    """kind: LABEL or OVERVIEW."""
    ds = Dataset()
    _common(ds, VL_WSM, 2 if kind == "LABEL" else 3)
    rows, cols = (48, 96) if kind == "LABEL" else (64, 160)
    _image(ds, kind, rows, cols, 1)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([_jpeg_frame(rows, cols, JPEG_NOTE)])
    ds["PixelData"].VR = "OB"
    _meta(ds, JPEGBaseline8Bit)
    return _bytes(ds)


def bulk_annotations() -> bytes:
    ds = Dataset()
    _common(ds, BULK_ANN, 4)
    ds.Modality = "ANN"
    ds.ContentLabel = "QUINCEY"
    ds.ContentDescription = "Annotations by Hildegard Vonnegut 2023-04-05"
    ds.ContentCreatorName = PREPARER
    ds.AnnotationCoordinateType = "2D"
    ds.PixelOriginInterpretation = "VOLUME"
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = VL_WSM, "1.2.826.0.1.3680043.8.498.10.1"
    ds.ReferencedImageSequence = Sequence([ref])
    g = Dataset()
    g.AnnotationGroupNumber = 1
    g.AnnotationGroupUID = "1.2.826.0.1.3680043.8.498.5"
    g.AnnotationGroupLabel = "Tumor Quincey 84736251"
    g.AnnotationGroupDescription = "outlined for Bartholomew Quincey, MRN 84736251"
    g.AnnotationGroupGenerationType = "MANUAL"
    g.AnnotationPropertyCategoryCodeSequence = Sequence([_code("49755003", "SCT", "Morphologically abnormal structure")])
    g.AnnotationPropertyTypeCodeSequence = Sequence([_code("108369006", "SCT", "Neoplasm")])
    g.GraphicType = "POLYGON"
    g.NumberOfAnnotations = 1
    g.AnnotationAppliesToAllOpticalPaths = "YES"
    g.PointCoordinatesData = POLYGON.tobytes()
    g.LongPrimitivePointIndexList = np.array([1], dtype=np.int32).tobytes()
    m = Dataset()
    m.ConceptNameCodeSequence = Sequence([_code("42798000", "SCT", "Area")])
    m.MeasurementUnitsCodeSequence = Sequence([_code("um2", "UCUM", "square micrometer")])
    vals = Dataset()
    vals.FloatingPointValues = AREA.tobytes()
    m.MeasurementValuesSequence = Sequence([vals])
    g.MeasurementsSequence = Sequence([m])
    ds.AnnotationGroupSequence = Sequence([g])
    _meta(ds, ExplicitVRLittleEndian)
    return _bytes(ds)
