"""A small but real 3DHISTECH MRXS slide: OpenSlide opens it as vendor 'mirax'.

Layout as OpenSlide reads it (openslide-vendor-mirax.c): NAME.mrxs beside a folder NAME/
holding Slidedat.ini, Index.dat and Data files. Three zoom levels of 64x64 JPEG images on a
4x4 grid (no position buffer, no overlap), and label, macro and preview JPEGs stored as
non-hierarchical records. PHI is planted in [GENERAL] (SLIDE_ID, SLIDE_NAME,
PROJECT_NAME, dates), a scanner serial, the Data file headers (SLIDE_ID, ProfileName) and
the label/macro JPEG bytes (a COM segment, so that a byte scan can see them go).
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

SLIDE_ID = "7C1F4E2A9B3D4F60A1B2C3D4E5F60718"
SLIDE_NAME = "Quincey_Bartholomew_S23-4711"
PROJECT = "Vonnegut Lymphoma Study"
CREATED = "2023.04.05 10:11:12"
CREATED_UTC = "2023.04.05 08:11:12"
SERIAL = "P250-SN-99182736"
PROFILE = "Dr Hildegard Vonnegut"
LABEL_TEXT = "LABEL Bartholomew Quincey S23-4711"
MACRO_TEXT = "MACRO Quincey overview 84736251"
PLANTED = [SLIDE_ID, SLIDE_NAME, PROJECT, CREATED, CREATED_UTC, SERIAL, PROFILE, LABEL_TEXT, MACRO_TEXT,
           "Quincey", "Bartholomew", "S23-4711", "84736251", "2023.04.05"]

GRID = 4
TILE = 64
LEVELS = 3
NONHIER = ["ScanDataLayer_SlideThumbnail", "ScanDataLayer_SlideBarcode", "ScanDataLayer_SlidePreview"]
TYPE_KEY = {"ScanDataLayer_SlideThumbnail": "THUMBNAIL_IMAGE_TYPE", "ScanDataLayer_SlideBarcode": "BARCODE_IMAGE_TYPE",
            "ScanDataLayer_SlidePreview": "PREVIEW_IMAGE_TYPE"}


def _jpeg(img: np.ndarray, comment: str | None = None) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    data = bytes(buf)
    if comment:
        body = comment.encode()
        data = data[:2] + b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + data[2:]
    return data


def _tile(level: int, x: int, y: int) -> np.ndarray:
    rng = np.random.default_rng(level * 1000 + y * GRID + x)
    img = rng.integers(0, 255, (TILE, TILE, 3), dtype=np.uint8)
    img[8:24, 8:24] = (40 * level, 200 - 10 * x, 30 * y)
    return img


def _label_image(text: str, w: int, h: int) -> np.ndarray:
    img = np.full((h, w, 3), 255, np.uint8)
    cv2.putText(img, text[:18], (4, h // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    img[h - 20:h - 4, 10:w - 10:3] = 0  # a barcode's bars
    return img


def slidedat(slide_id: str = SLIDE_ID) -> str:
    lines = [
        "[GENERAL]",
        "SLIDE_VERSION = 01.02",
        f"SLIDE_ID = {slide_id}",
        f"SLIDE_NAME = {SLIDE_NAME}",
        f"PROJECT_NAME = {PROJECT}",
        f"SLIDE_CREATIONDATETIME = {CREATED}",
        f"SLIDE_UTC_CREATIONDATETIME = {CREATED_UTC}",
        f"IMAGENUMBER_X = {GRID}",
        f"IMAGENUMBER_Y = {GRID}",
        "OBJECTIVE_MAGNIFICATION = 20",
        "OBJECTIVE_NAME = Plan-Apochromat",
        "CameraImageDivisionsPerSide = 1",
        "",
        "[HIERARCHICAL]",
        "HIER_COUNT = 1",
        "HIER_0_NAME = Slide zoom level",
        f"HIER_0_COUNT = {LEVELS}",
    ]
    for z in range(LEVELS):
        lines += [f"HIER_0_VAL_{z} = ZoomLevel_{z}", f"HIER_0_VAL_{z}_SECTION = LAYER_0_LEVEL_{z}_SECTION"]
    lines += ["NONHIER_COUNT = 1", "NONHIER_0_NAME = Scan data layer", f"NONHIER_0_COUNT = {len(NONHIER)}"]
    for j, name in enumerate(NONHIER):
        lines += [f"NONHIER_0_VAL_{j} = {name}", f"NONHIER_0_VAL_{j}_SECTION = NONHIERLAYER_0_LEVEL_{j}_SECTION"]
    lines += ["INDEXFILE = Index.dat", "", "[DATAFILE]", "FILE_COUNT = 2", "FILE_0 = Data0000.dat", "FILE_1 = Data0001.dat", ""]
    for z in range(LEVELS):
        lines += [
            f"[LAYER_0_LEVEL_{z}_SECTION]", "OVERLAP_X = 0", "OVERLAP_Y = 0", f"MICROMETER_PER_PIXEL_X = {0.25 * 2 ** z}",
            f"MICROMETER_PER_PIXEL_Y = {0.25 * 2 ** z}", "IMAGE_FORMAT = JPEG", "IMAGE_FILL_COLOR_BGR = 16777215",
            f"DIGITIZER_WIDTH = {TILE}", f"DIGITIZER_HEIGHT = {TILE}", f"IMAGE_CONCAT_FACTOR = {0 if z == 0 else 1}", "",
        ]
    for j, name in enumerate(NONHIER):
        lines += [f"[NONHIERLAYER_0_LEVEL_{j}_SECTION]", f"{TYPE_KEY[name]} = JPEG", f"SCANNER_HARDWARE_ID = {SERIAL}", ""]
    return "\r\n".join(lines)


def make_mrxs(folder: Path, name: str = "slide") -> Path:
    """Writes folder/name.mrxs and folder/name/ and returns the .mrxs path."""
    folder.mkdir(parents=True, exist_ok=True)
    mrxs = folder / f"{name}.mrxs"
    d = folder / name
    d.mkdir(exist_ok=True)
    (d / "Slidedat.ini").write_bytes(b"\xef\xbb\xbf" + slidedat().encode())
    header = b"01.02" + SLIDE_ID.encode()
    data = [bytearray(header + f'<Profile ProfileName="{PROFILE}" Version="2"/>'.encode().ljust(91, b" ")),
            bytearray(header)]
    hier: list[list[tuple[int, int, int, int]]] = []
    for z in range(LEVELS):
        step = 2 ** z
        recs = []
        for y in range(0, GRID, step):
            for x in range(0, GRID, step):
                f = (x + y + z) % 2
                blob = _jpeg(_tile(z, x, y))
                recs.append((y * GRID + x, len(data[f]), len(blob), f))
                data[f] += blob
        hier.append(recs)
    nonhier = []
    images = {
        "ScanDataLayer_SlideThumbnail": _jpeg(_label_image("overview", 160, 64), MACRO_TEXT),
        "ScanDataLayer_SlideBarcode": _jpeg(_label_image("B. Quincey", 96, 64), LABEL_TEXT),
        "ScanDataLayer_SlidePreview": _jpeg(_label_image("preview", 128, 48), MACRO_TEXT),
    }
    for name_ in NONHIER:
        blob = images[name_]
        nonhier.append((len(data[1]), len(blob), 1))
        data[1] += blob
    (d / "Data0000.dat").write_bytes(bytes(data[0]))
    (d / "Data0001.dat").write_bytes(bytes(data[1]))
    (d / "Index.dat").write_bytes(_index(header, hier, nonhier))
    mrxs.write_bytes(b"")
    return mrxs


def _index(header: bytes, hier: list, nonhier: list) -> bytes:
    out = bytearray(header) + b"\x00" * 8
    hier_root, nonhier_root = len(header), len(header) + 4

    def put(at: int, v: int) -> None:
        struct.pack_into("<i", out, at, v)

    def alloc(n: int) -> int:
        at = len(out)
        out.extend(b"\x00" * n)
        return at

    hier_table = alloc(4 * len(hier))
    put(hier_root, hier_table)
    for z, recs in enumerate(hier):
        head = alloc(8)
        put(hier_table + 4 * z, head)
        page = alloc(8 + 16 * len(recs))
        put(head, 0)
        put(head + 4, page)
        put(page, len(recs))
        put(page + 4, 0)
        for i, (idx, off, ln, f) in enumerate(recs):
            struct.pack_into("<iiii", out, page + 8 + 16 * i, idx, off, ln, f)
    table = alloc(4 * len(nonhier))
    put(nonhier_root, table)
    for r, (off, ln, f) in enumerate(nonhier):
        head = alloc(8)
        put(table + 4 * r, head)
        page = alloc(28)
        put(head + 4, page)
        struct.pack_into("<iiiiiii", out, page, 1, 0, 0, 0, off, ln, f)
    return bytes(out)
