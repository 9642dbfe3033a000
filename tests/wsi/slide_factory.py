"""Small, realistic synthetic slides of every TIFF-family format, with PHI planted in every
place the format keeps it and a label that carries a name and a barcode-like pattern.

tifffile writes the real TIFF/BigTIFF structure with JPEG tiles (pre-encoded once with
OpenCV and repeated: fast, and tile bytes stay comparable); NDPI's 64-bit-offset layout,
which tifffile cannot write, is written here with struct. Importable by bench/ too.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import tifffile

TILE = 256


@dataclass
class Planted:
    path: Path
    vendor: str  # openslide.vendor expected
    values: list[str] = field(default_factory=list)  # every planted PHI value
    label_sample: bytes = b""  # a run of the label's stored bytes, which must not survive
    macro_sample: bytes = b""
    associated: tuple[str, ...] = ()  # OpenSlide names of associated images in the source
    # times of day: kept under the default retain_longitudinal_modified_dates (as DICOM keeps
    # TM), removed when the policy keeps no dates (wsi/dates.py); not in ``values``
    times: list[str] = field(default_factory=list)


def tissue(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.full((h, w, 3), (235, 200, 225), np.uint8)
    for _ in range(max(4, h * w // 20000)):
        c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.circle(base, c, int(rng.integers(3, 25)), tuple(int(x) for x in rng.integers(60, 200, 3)), -1)
    return base


def jpeg(img: np.ndarray, q: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return buf.tobytes()


def label_image(name: str, w: int = 300, h: int = 240, seed: int = 1) -> np.ndarray:
    """White label: a patient's name, an accession and a barcode-like stripe pattern."""
    img = np.full((h, w, 3), 250, np.uint8)
    cv2.putText(img, name, (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    cv2.putText(img, "S21-12345", (10, 80), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
    rng = np.random.default_rng(seed)
    x = 10
    while x < w - 20:
        bw = int(rng.integers(1, 5))
        img[110:h - 20, x:x + bw] = 0
        x += bw + int(rng.integers(1, 4))
    return img


def macro_image(name: str, w: int = 600, h: int = 200, label_end: str = "left") -> np.ndarray:
    img = np.full((h, w, 3), 230, np.uint8)
    img[:, int(w * 0.4):] = tissue(h, w - int(w * 0.4), 3) if label_end == "left" else img[:, int(w * 0.4):]
    lab = label_image(name, int(w * 0.3), h - 20)
    if label_end == "left":
        img[10:h - 10, 5:5 + lab.shape[1]] = lab
    else:
        img[10:h - 10, w - 5 - lab.shape[1]:w - 5] = lab
        img[:, :int(w * 0.6)] = tissue(h, int(w * 0.6), 4)
    return img


def tiles_of(img: np.ndarray) -> list[bytes]:
    h, w = img.shape[:2]
    out = []
    for y in range(0, h, TILE):
        for x in range(0, w, TILE):
            t = np.zeros((TILE, TILE, 3), np.uint8)
            part = img[y:y + TILE, x:x + TILE]
            t[:part.shape[0], :part.shape[1]] = part
            out.append(jpeg(t))
    return out


def write_level(tw: tifffile.TiffWriter, img: np.ndarray, **kw) -> None:
    h, w = img.shape[:2]
    tw.write(iter(tiles_of(img)), shape=(h, w, 3), dtype="uint8", tile=(TILE, TILE), compression="jpeg",
             photometric="rgb", metadata=None, **kw)


def _stored(path: Path, page: int) -> bytes:
    with tifffile.TiffFile(path) as tf:
        p = tf.pages[page]
        off, n = p.dataoffsets[0], p.databytecounts[0]
    with open(path, "rb") as fh:
        fh.seek(off + n // 4)
        return fh.read(min(64, n // 2))


COMMON = {
    "DateTime": "2021:03:14 13:45:12", "Artist": "Gregory House MD", "HostComputer": "PATHLAB-WS-0042",
    "DocumentName": "jane_doe_case_file", "Software": "ScanStation SN998877",
}
# the last: an ASCII tag no list names (TargetPrinter, 337), which the kept-list must remove
COMMON_PHI = ["2021:03:14 13:45:12", "Gregory House MD", "PATHLAB-WS-0042", "jane_doe_case_file", "SN998877",
              "PRINTER-JDOE-LAB7"]


def _extratags(when: str | None = None) -> list[tuple]:
    return [(306, "s", 0, when or COMMON["DateTime"], True), (315, "s", 0, COMMON["Artist"], True),
            (316, "s", 0, COMMON["HostComputer"], True), (269, "s", 0, COMMON["DocumentName"], True),
            (337, "s", 0, COMMON_PHI[-1], True)]


# ---- Aperio ------------------------------------------------------------------------------
APERIO_PHI = {
    "Filename": "DOE_JANE_19700101", "Title": "Biopsy of Jane Doe", "Date": "03/14/21", "Time": "09:15:33",
    "Time Zone": "GMT+0100", "User": "b1c2d3e4-aaaa-bbbb-cccc-1234567890ab", "ScanScope ID": "SS1234X",
    "DSR ID": "dsr-host-JDOE", "ImageID": "IMG778899", "Barcode": "BC-S21-12345-DOE", "Rack": "RACK4242",
    "Slide": "SLIDE7777",
}


def make_aperio(path: Path, gt450: bool = False, when: str | None = None) -> Planted:
    """``when`` ("YYYY:MM:DD HH:MM:SS"): the scan's date and time, written as real scanners
    write it, in TIFF DateTime and again as the description's Date and Time."""
    lvl0 = tissue(768, 1024)
    levels = [lvl0, cv2.resize(lvl0, (512, 384), interpolation=cv2.INTER_AREA)]
    if gt450:
        levels += [cv2.resize(lvl0, (256, 192)), cv2.resize(lvl0, (128, 96))]
    head = "Aperio Leica Biosystems GT450 v1.0.1" if gt450 else "Aperio Image Library v12.0.15"
    older = "" if gt450 else ";Aperio Image Library v10.0.50\r\nORIGINAL_DOE_SCAN.tif -> 1024x768"
    phi = dict(APERIO_PHI)
    if when:
        y, mo, d = when[:10].split(":")
        phi["Date"], phi["Time"] = f"{mo}/{d}/{y[2:]}", when[11:]
    pairs = "|".join(f"{k} = {v}" for k, v in phi.items())
    desc0 = f"{head}\r\n1024x768 [0,0 1024x768] (256x256) JPEG/RGB Q=80{older}|AppMag = 20|MPP = 0.4990|{pairs}"
    label = label_image("JANE DOE")
    macro = macro_image("JANE DOE")
    with tifffile.TiffWriter(path) as tw:
        write_level(tw, levels[0], description=desc0, extratags=_extratags(when), software=COMMON["Software"])
        thumb = cv2.resize(lvl0, (256, 192))
        tw.write(thumb, photometric="rgb", compression="jpeg", metadata=None,
                 description=f"{head}\r\n1024x768 -> 256x192 - |AppMag = 20|Filename = {APERIO_PHI['Filename']}")
        for lv in levels[1:]:
            h, w = lv.shape[:2]
            write_level(tw, lv, description=f"{head}\r\n1024x768 -> {w}x{h} - |AppMag = 20|Date = {phi['Date']}")
        if gt450:
            tw.write(label, photometric="rgb", compression="lzw", metadata=None, subfiletype=1)
            tw.write(macro, photometric="rgb", compression="jpeg", metadata=None, subfiletype=9)
        else:
            tw.write(label, photometric="rgb", compression="lzw", metadata=None, subfiletype=1,
                     description=f"{head}\r\nlabel 300x240")
            tw.write(macro, photometric="rgb", compression="jpeg", metadata=None, subfiletype=9,
                     description=f"{head}\r\nmacro 600x200")
    n = len(levels) + 1
    values = [v for k, v in phi.items() if k != "Time"] + COMMON_PHI + ([] if gt450 else ["ORIGINAL_DOE_SCAN"])
    if when:
        values[values.index(COMMON["DateTime"])] = when
    return Planted(path, "aperio", values, _stored(path, n), _stored(path, n + 1), ("label", "macro", "thumbnail"),
                   [phi["Time"]])


# ---- Hamamatsu NDPI (struct: tifffile cannot write the 64-bit-offset layout) ---------------
NDPI_PHI = {
    65427: "NDPI-LABEL-DOE-JANE", 65442: "SERIAL-HAMA-55501", 65468: "BARCODE-NDPI-778",
    65469: "BARCODE2-NDPI-779", 65476: "BARCODE9-NDPI-780", 65477: "NDPI-65477-SECRET",
}
NDPI_MAP_PHI = {"Operator": "Operator Jane Smithers", "Created": "2021/03/14 13:45:12", "SerialNumber": "HAMA-SN-000123"}


def _ndpi_ifd(entries: list[tuple[int, int, int, bytes]], at: int, next_off: int) -> tuple[bytes, bytes]:
    """(IFD bytes, external values) for an IFD written at ``at``; values right after it."""
    n = len(entries)
    size = 2 + 12 * n + 8 + 4 * n
    ext = b""
    recs = []
    for tag, typ, count, data in sorted(entries):
        if len(data) <= 4:
            recs.append((tag, typ, count, data.ljust(4, b"\0")))
        else:
            off = at + size + len(ext)
            recs.append((tag, typ, count, struct.pack("<I", off)))
            ext += data + (b"\0" if len(data) % 2 else b"")
    body = struct.pack("<H", n) + b"".join(struct.pack("<HHI", t, ty, c) + f for t, ty, c, f in recs)
    body += struct.pack("<Q", next_off) + b"\0" * (4 * n)
    return body, ext


def _ndpi_entries(data: bytes, w: int, h: int, mag: float, blob: int, pmap: str) -> list[tuple[int, int, int, bytes]]:
    def a(s: str) -> bytes:
        return s.encode() + b"\0"

    entries = [
        (254, 4, 1, struct.pack("<I", 0)), (256, 4, 1, struct.pack("<I", w)), (257, 4, 1, struct.pack("<I", h)),
        (258, 3, 3, struct.pack("<3H", 8, 8, 8)), (259, 3, 1, struct.pack("<H", 7)), (262, 3, 1, struct.pack("<H", 6)),
        (271, 2, 10, a("Hamamatsu")), (272, 2, 9, a("C9600-12")), (273, 4, 1, struct.pack("<I", blob)),
        (277, 3, 1, struct.pack("<H", 3)), (278, 4, 1, struct.pack("<I", h)), (279, 4, 1, struct.pack("<I", len(data))),
        (282, 5, 1, struct.pack("<II", 100000, 1)), (283, 5, 1, struct.pack("<II", 100000, 1)), (296, 3, 1, struct.pack("<H", 3)),
        (305, 2, len(COMMON["Software"]) + 1, a(COMMON["Software"])), (306, 2, 20, a(COMMON["DateTime"])),
        (65420, 4, 1, struct.pack("<I", 1)), (65421, 11, 1, struct.pack("<f", mag)),
        (65422, 9, 1, struct.pack("<i", 0)), (65423, 9, 1, struct.pack("<i", 0)), (65424, 9, 1, struct.pack("<i", 0)),
        (65449, 2, len(pmap) + 1, a(pmap)),
    ]
    return entries + [(tag, 2, len(v) + 1, a(v)) for tag, v in NDPI_PHI.items()]


def make_ndpi(path: Path) -> Planted:
    lvl0 = tissue(512, 768, 5)
    levels = [(lvl0, 20.0), (cv2.resize(lvl0, (384, 256)), 20.0)]
    macro = macro_image("JANE DOE", 480, 160, "left")
    pmap = "\r\n".join(f"{k}={v}" for k, v in NDPI_MAP_PHI.items()) + "\r\nObjective.Lens.Magnificant=20\r\n"
    images = [(jpeg(im), im.shape[1], im.shape[0], mag) for im, mag in levels] + [(jpeg(macro), macro.shape[1], macro.shape[0], -1.0)]
    out = bytearray(b"II*\0" + b"\0" * 12)
    blobs = []
    for data, _, _, _ in images:
        blobs.append(len(out))
        out += data + (b"\0" if len(data) % 2 else b"")
    entries = [_ndpi_entries(d, w, h, mag, blobs[i], pmap) for i, (d, w, h, mag) in enumerate(images)]
    ifd_offsets = []
    pos = len(out)
    for ent in entries:  # first pass: where each IFD (and its values) will sit
        ifd_offsets.append(pos)
        n = len(ent)
        pos += 2 + 12 * n + 8 + 4 * n + sum(len(d) + (len(d) % 2) for _, _, _, d in ent if len(d) > 4)
    for i, ent in enumerate(entries):
        nxt = ifd_offsets[i + 1] if i + 1 < len(entries) else 0
        body, ext = _ndpi_ifd(ent, ifd_offsets[i], nxt)
        assert len(out) == ifd_offsets[i]
        out += body + ext
    out[4:12] = struct.pack("<Q", ifd_offsets[0])
    path.write_bytes(bytes(out))
    mdata = images[-1][0]
    values = list(NDPI_PHI.values()) + list(NDPI_MAP_PHI.values()) + ["2021:03:14 13:45:12", "SN998877"]
    return Planted(path, "hamamatsu", values, b"", mdata[len(mdata) // 3:len(mdata) // 3 + 64], ("macro",))


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _pyramid(seed: int) -> list[np.ndarray]:
    lvl0 = tissue(768, 1024, seed)
    return [lvl0, cv2.resize(lvl0, (512, 384), interpolation=cv2.INTER_AREA)]


# ---- Leica SCN -----------------------------------------------------------------------------
LEICA_NS = "http://www.leica-microsystems.com/scn/2010/10/01"
LEICA_PHI = {"barcode": "LEICA-BC-DOE-4411", "collection": "Collection Jane Doe", "image": "Image of Jane Doe",
             "macro": "Macro for Jane Doe", "date": "2021-03-14T13:45:12.00Z", "serial": "SCN400-SERIAL-9911",
             "uuid": "urn:uuid:1b2c3d4e-0000-1111-2222-333344445555",
             # an element and an attribute no Leica reader needs: the kept-list must drop them
             "notes": "Notes on Jane Doe slide", "tech": "Tech Jane Roe", "operator": "Op Jane Roe"}


def make_leica(path: Path, model: str = "Leica SCN400;Leica SCN") -> Planted:
    main = _pyramid(11)
    macro = macro_image("JANE DOE", 512, 192, "left")
    img = lambda name, w, h, dims, vx, vy, ox, oy, obj: (  # noqa: E731
        f'<image name="{name}" uuid="{LEICA_PHI["uuid"]}-{ox}"><creationDate>{LEICA_PHI["date"]}</creationDate>'
        f'<device model="{model}" version="1.4.0.11184 2011/10/11 11:49:19;1.4.0.11184" '
        f'serialNumber="{LEICA_PHI["serial"]}"/><pixels sizeX="{w}" sizeY="{h}" operator="{LEICA_PHI["operator"]}">{dims}</pixels>'
        f'<slideNotes technician="{LEICA_PHI["tech"]}">{LEICA_PHI["notes"]}</slideNotes>'
        f'<view sizeX="{vx}" sizeY="{vy}" offsetX="{ox}" offsetY="{oy}" spacingZ="0"/>'
        f'<scanSettings><objectiveSettings><objective>{obj}</objective></objectiveSettings>'
        f'<illuminationSettings><numericalAperture>0.7</numericalAperture>'
        f'<illuminationSource>brightfield</illuminationSource></illuminationSettings></scanSettings></image>')
    dims_main = "".join(f'<dimension sizeX="{m.shape[1]}" sizeY="{m.shape[0]}" r="{i}" ifd="{i + 1}"/>' for i, m in enumerate(main))
    xml = (f'<?xml version="1.0" encoding="utf-8"?><scn xmlns="{LEICA_NS}">'
           f'<collection name="{LEICA_PHI["collection"]}" uuid="{LEICA_PHI["uuid"]}" sizeX="51200" sizeY="19200">'
           f'<barcode>{b64(LEICA_PHI["barcode"])}</barcode>'
           + img(LEICA_PHI["macro"], 512, 192, '<dimension sizeX="512" sizeY="192" r="0" ifd="0"/>', 51200, 19200, 0, 0, 0.5)
           + img(LEICA_PHI["image"], 1024, 768, dims_main, 25600, 19200, 20480, 0, 20)
           + "</collection></scn>")
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        write_level(tw, macro, description=xml, extratags=_extratags(), software=COMMON["Software"])
        for lv in main:
            write_level(tw, lv)
    values = list(LEICA_PHI.values()) + COMMON_PHI
    return Planted(path, "leica", values, b"", _stored(path, 0), ("macro",))


# ---- Ventana BIF ---------------------------------------------------------------------------
VENTANA_PHI = {"BarCode1D": "VEN-BC-DOE-5511", "UnitNumber": "UNIT-SN-7788", "UserName": "Tech Jane Smithers",
               "ScanDate": "2021-03-14", "ScannerSerialNumber": "VENTANA-SN-4455", "SlideAnnotation": "Jane Doe biopsy 3"}


def make_ventana(path: Path) -> Planted:
    main = _pyramid(21)
    attrs = " ".join(f'{k}="{v}"' for k, v in VENTANA_PHI.items())
    xmp = (f'<?xml version="1.0" encoding="utf-8"?><Metadata><iScan {attrs} Magnification="20" ScanRes="0.465" '
           f'Z-layers="1" Z-spacing="1"><AOI0 Left="0" Top="0" Right="1024" Bottom="768"/></iScan></Metadata>')
    label = label_image("JANE DOE", 300, 240)
    thumb = cv2.resize(main[0], (256, 192))
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        tw.write(label, photometric="rgb", compression="lzw", metadata=None, description="Label Image",
                 extratags=_extratags() + [(700, "B", len(xmp.encode()), xmp.encode(), True)], software=COMMON["Software"])
        tw.write(thumb, photometric="rgb", compression="jpeg", metadata=None, description="Thumbnail")
        for i, lv in enumerate(main):
            write_level(tw, lv, description=f"level={i} mag={20 // (2 ** i)} quality=90")
    values = list(VENTANA_PHI.values()) + COMMON_PHI
    return Planted(path, "ventana", values, _stored(path, 0), b"", ("macro", "thumbnail"))


# ---- Philips TIFF --------------------------------------------------------------------------
PHILIPS_PHI = {"DICOM_PATIENT_NAME": "DOE^JANE^PHILIPS", "DICOM_PATIENT_ID": "MRN-PH-123456",
               "DICOM_ACCESSION_NUMBER": "ACC-PH-998877", "DICOM_DEVICE_SERIAL_NUMBER": "UFS-SN-31337",
               "PIM_DP_UFS_BARCODE": "PH-BARCODE-4242", "DICOM_ACQUISITION_DATETIME": "20210314134512.000000",
               "DICOM_INSTITUTION_NAME": "Saint Jane Hospital"}
# outside any Attribute: an element, an attribute and loose text the kept-list must drop
PHILIPS_EXTRA = {"comment": "Philips comment Jane Doe", "author": "Author Jane Roe", "owner": "Owner Jane Roe",
                 "loose": "Loose text Jane Roe"}


def _attr(name: str, value: str, pmsvr: str = "IString") -> str:
    return f'<Attribute Name="{name}" Group="0x0000" Element="0x0000" PMSVR="{pmsvr}">{value}</Attribute>'


def make_philips(path: Path, patient: str | None = None, acquired: str | None = None) -> Planted:
    main = _pyramid(31)
    label_jpg = jpeg(label_image("JANE DOE PHILIPS", 240, 200))
    macro_jpg = jpeg(macro_image("JANE DOE PHILIPS", 480, 160, "left"))
    scanned = ""
    for typ, data in (("WSI", None), ("LABELIMAGE", label_jpg), ("MACROIMAGE", macro_jpg)):
        inner = _attr("PIM_DP_IMAGE_TYPE", typ)
        if data is not None:
            inner += _attr("PIM_DP_IMAGE_DATA", base64.b64encode(data).decode())
        else:
            inner += _attr("DICOM_PIXEL_SPACING", '"0.000250" "0.000250"', "IDoubleArray")
            inner += ('<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" PMSVR="IDataObjectArray"><Array>'
                      + "".join(f'<DataObject ObjectType="PixelDataRepresentation">'
                                f'{_attr("PIIM_PIXEL_DATA_REPRESENTATION_NUMBER", str(i), "IUInt32")}'
                                f'{_attr("DICOM_PIXEL_SPACING", chr(34) + str(0.00025 * 2 ** i) + chr(34) + " " + chr(34) + str(0.00025 * 2 ** i) + chr(34), "IDoubleArray")}'  # noqa: E501
                                f'</DataObject>' for i in range(len(main)))
                      + "</Array></Attribute>")
        scanned += f'<DataObject ObjectType="DPScannedImage">{inner}</DataObject>'
    phi = {**PHILIPS_PHI, **({"DICOM_PATIENT_ID": patient} if patient else {}),
           **({"DICOM_ACQUISITION_DATETIME": acquired} if acquired else {})}
    top = "".join(_attr(k, v) for k, v in phi.items()).replace(
        "<Attribute ", f'<Attribute Owner="{PHILIPS_EXTRA["owner"]}" ', 1)
    top += f'<Comment Author="{PHILIPS_EXTRA["author"]}">{PHILIPS_EXTRA["comment"]}</Comment>{PHILIPS_EXTRA["loose"]}'
    xml = (f'<?xml version="1.0" encoding="UTF-8" ?><DataObject ObjectType="DPUfsImport">{top}'
           f'{_attr("DICOM_MANUFACTURER", "PHILIPS")}'
           f'<Attribute Name="PIM_DP_SCANNED_IMAGES" Group="0x301D" Element="0x1003" PMSVR="IDataObjectArray"><Array>'
           f'{scanned}</Array></Attribute></DataObject>')
    with tifffile.TiffWriter(path, bigtiff=False) as tw:
        for i, lv in enumerate(main):
            kw = {"description": xml, "extratags": _extratags()} if i == 0 else {"description": f"level={i}", "subfiletype": 1}
            write_level(tw, lv, software="Philips DP v1.0", **kw)
    values = list(phi.values()) + list(PHILIPS_EXTRA.values()) + COMMON_PHI[:4] + COMMON_PHI[5:]
    return Planted(path, "philips", values, label_jpg[len(label_jpg) // 2:len(label_jpg) // 2 + 64],
                   macro_jpg[len(macro_jpg) // 2:len(macro_jpg) // 2 + 64], ("label", "macro"))


# ---- OME-TIFF ------------------------------------------------------------------------------
OME_PHI = {"first": "Janet", "last": "Doe-Ome", "email": "jane.doe@example.org", "user": "jdoe-ome",
           "inst": "Saint Ome Hospital", "name": "OME image of Jane Doe", "date": "2021-03-14T13:45:12",
           "serial": "OME-MICRO-SN-777", "desc": "Biopsy MRN-OME-5555"}


def make_ome(path: Path) -> Planted:
    main = _pyramid(41)
    p = OME_PHI
    xml = (f'<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
           f'UUID="urn:uuid:aaaabbbb-cccc-dddd-eeee-ffff00001111">'
           f'<Instrument ID="Instrument:0"><Microscope Manufacturer="Zeiss" Model="Axio" SerialNumber="{p["serial"]}"/></Instrument>'
           f'<Experimenter ID="Experimenter:0" FirstName="{p["first"]}" LastName="{p["last"]}" Email="{p["email"]}" '
           f'UserName="{p["user"]}" Institution="{p["inst"]}"/>'
           f'<Image ID="Image:0" Name="{p["name"]}"><AcquisitionDate>{p["date"]}</AcquisitionDate>'
           f'<ExperimenterRef ID="Experimenter:0"/><Description>{p["desc"]}</Description>'
           f'<Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="1024" SizeY="768" SizeC="3" SizeZ="1" SizeT="1" '
           f'PhysicalSizeX="0.25" PhysicalSizeY="0.25"><Channel ID="Channel:0:0" SamplesPerPixel="3"/>'
           f'<TiffData IFD="0" PlaneCount="1"/></Pixels></Image></OME>')
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        h, w = main[0].shape[:2]
        tw.write(iter(tiles_of(main[0])), shape=(h, w, 3), dtype="uint8", tile=(TILE, TILE), compression="jpeg",
                 photometric="rgb", metadata=None, description=xml, subifds=1, extratags=_extratags(),
                 software=COMMON["Software"])
        h, w = main[1].shape[:2]
        tw.write(iter(tiles_of(main[1])), shape=(h, w, 3), dtype="uint8", tile=(TILE, TILE), compression="jpeg",
                 photometric="rgb", metadata=None, subfiletype=1, extratags=_extratags())
    return Planted(path, "generic-tiff", list(p.values()) + COMMON_PHI, b"", b"", ())


# ---- generic pyramidal TIFF ----------------------------------------------------------------
def make_generic(path: Path) -> Planted:
    main = _pyramid(51)
    label = label_image("JANE DOE GENERIC", 240, 200)
    with tifffile.TiffWriter(path) as tw:
        write_level(tw, main[0], description="Scan of Jane Doe MRN-GEN-3131", extratags=_extratags(),
                    software=COMMON["Software"])
        write_level(tw, main[1], subfiletype=1, extratags=_extratags())
        tw.write(label, photometric="rgb", compression="lzw", metadata=None, subfiletype=1)
    values = ["Scan of Jane Doe MRN-GEN-3131"] + COMMON_PHI
    return Planted(path, "generic-tiff", values, _stored(path, 2), b"", ())


MAKERS = {"aperio": make_aperio, "gt450": lambda p: make_aperio(p, gt450=True), "hamamatsu": make_ndpi,
          "leica": make_leica, "ventana": make_ventana, "philips": make_philips, "ome": make_ome,
          "generic_tiff": make_generic}
SUFFIX = {"aperio": ".svs", "gt450": ".svs", "hamamatsu": ".ndpi", "leica": ".scn", "ventana": ".bif",
          "philips": ".tiff", "ome": ".ome.tiff", "generic_tiff": ".tif"}


# ---- burned-in text on the low levels (tile scan) ----------------------------------------------
SCAN_WORDS = ("JOHNSON", "MRN 4471")


def split_jpeg(data: bytes) -> tuple[bytes, bytes]:
    """(tables, abbreviated stream) of a baseline JPEG: its DQT and DHT segments moved into a
    tables-only stream, as scanners write tiles against a level's JPEGTables."""
    assert data[:2] == b"\xff\xd8"
    tables, rest, pos = bytearray(b"\xff\xd8"), bytearray(b"\xff\xd8"), 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: the rest is entropy-coded data
            rest += data[pos:]
            break
        n = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        (tables if marker in (0xDB, 0xC4) else rest).extend(data[pos:pos + 2 + n])
        pos += 2 + n
    return bytes(tables + b"\xff\xd9"), bytes(rest)


def make_text_slide(path: Path) -> Planted:
    """An Aperio slide of three levels: level 0 JPEG, level 1 JPEG against JPEGTables,
    level 2 LZW; burned-in words drawn into levels 1 and 2 straddling a tile edge."""
    lvl0 = tissue(1536, 2048, 61)
    l1 = cv2.resize(lvl0, (1024, 768), interpolation=cv2.INTER_AREA)
    l2 = cv2.resize(lvl0, (512, 384), interpolation=cv2.INTER_AREA)
    font = cv2.FONT_HERSHEY_SIMPLEX
    l1[430:560, 300:760] = 245  # a pale sticker under the text, across the tile edge at x=512
    cv2.putText(l1, SCAN_WORDS[0], (320, 480), font, 1.9, (10, 10, 10), 5, cv2.LINE_AA)
    cv2.putText(l1, SCAN_WORDS[1], (340, 545), font, 1.9, (10, 10, 10), 5, cv2.LINE_AA)
    l2[215:300, 130:400] = 245  # across the tile edges at x=256 and y=256
    cv2.putText(l2, SCAN_WORDS[0], (140, 248), font, 1.1, (10, 10, 10), 3, cv2.LINE_AA)
    cv2.putText(l2, SCAN_WORDS[1], (150, 290), font, 1.1, (10, 10, 10), 3, cv2.LINE_AA)
    head = "Aperio Image Library v12.0.15"
    split = [split_jpeg(t) for t in tiles_of(l1)]
    assert len({s[0] for s in split}) == 1  # one quality, standard Huffman tables: shared
    with tifffile.TiffWriter(path) as tw:
        write_level(tw, lvl0, description=f"{head}\r\n2048x1536 [0,0 2048x1536] (256x256) JPEG/RGB Q=80|AppMag = 20|MPP = 0.5")
        tw.write(cv2.resize(lvl0, (256, 192)), photometric="rgb", compression="jpeg", metadata=None,
                 description=f"{head}\r\n2048x1536 -> 256x192 - |AppMag = 20")
        tw.write(iter([s[1] for s in split]), shape=(768, 1024, 3), dtype="uint8", tile=(TILE, TILE), compression="jpeg",
                 photometric="rgb", metadata=None, description=f"{head}\r\n2048x1536 -> 1024x768 - |AppMag = 20",
                 extratags=[(347, 7, len(split[0][0]), split[0][0], True)])
        tw.write(l2, tile=(TILE, TILE), compression="lzw", predictor=True, photometric="rgb", metadata=None,
                 description=f"{head}\r\n2048x1536 -> 512x384 - |AppMag = 20")
    return Planted(path, "aperio", [], b"", b"", ("thumbnail",))
