"""Codec layer for burned-in-text redaction (PS3.15 E.3.1, Clean Pixel Data Option).

Decode every frame, blank rectangles, and write the result back without adding any loss:
pixels outside the boxes must come back bit-identical to what was decoded, so every
compressed re-encode is decoded again and compared before it is accepted.

Colour policy. A lossy source (JPEG baseline/extended, JPEG-LS near-lossless, JPEG 2000
irreversible, HTJ2K) is decoded the way a viewer shows it: YBR_FULL / YBR_FULL_422 are
converted to RGB by pydicom and the output says 'RGB'. The image was lossy already, RGB is
what was looked at when the text was found, every lossless encoder here accepts it, and a
'min'/'max' fill then means black/white instead of a green or pink box. A lossless source
keeps its stored values: YBR_FULL stays YBR_FULL, native YBR_FULL_422 is written as the
equivalent YBR_FULL (pydicom expands the chroma; re-subsampling would average it), and
JPEG 2000 YBR_RCT (which openjpeg returns as RGB) is re-encoded with the reversible
colour transform and labelled YBR_RCT again.

Output transfer syntax, first candidate that encodes and round-trips bit-exactly:

=========================================  ==============================================
source                                     written as
=========================================  ==============================================
Explicit VR LE / Implicit VR LE / Deflate  the same syntax
Explicit VR Big Endian (retired)           the same syntax: pydicom's save_as refuses to
                                           change byte order, and swapping the other OW/OF
                                           /UN values is not the pixel layer's business
RLE Lossless                               RLE; >16-bit data (pydicom's RLE profile stops
                                           at 16): JPEG 2000 Lossless, else Explicit VR LE
JPEG-LS Lossless                           JPEG-LS Lossless, then J2K Lossless, RLE, EVRLE
JPEG 2000 Lossless                         J2K Lossless, then JPEG-LS Lossless, RLE, EVRLE
JPEG Lossless (process 14, and SV1)        the same syntax via GDCM (8-bit or 16-bit
                                           containers only), then JPEG-LS Lossless,
                                           J2K Lossless, RLE, EVRLE
HTJ2K Lossless (no encoder here)           J2K Lossless, then JPEG-LS Lossless, RLE, EVRLE
any lossy syntax                           JPEG-LS Lossless, J2K Lossless, RLE, EVRLE
=========================================  ==============================================
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom import uid as U
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder, get_encoder
from pydicom.pixels.utils import pack_bits
from pydicom.valuerep import VR

from phiscrub.dicom import quiet  # noqa: F401  (pydicom's warnings quote element values; this silences them)
from phiscrub.errors import UnsupportedInput
from phiscrub.pixels.boxes import Box

MAX_DECODED_BYTES = 2 * 1024**3  # a decoded image larger than this is not plausible here

LOSSY_SYNTAXES = frozenset({U.JPEGBaseline8Bit, U.JPEGExtended12Bit, U.JPEGLSNearLossless, U.JPEG2000, U.HTJ2K})
# DICOM's code for the lossy method each syntax implies (PS3.3 C.7.6.1.1.5.1).
LOSSY_METHOD = {
    U.JPEGBaseline8Bit: "ISO_10918_1", U.JPEGExtended12Bit: "ISO_10918_1", U.JPEGLSNearLossless: "ISO_14495_1",
    U.JPEG2000: "ISO_15444_1", U.HTJ2K: "ISO_15444_15",
}
_LOSSLESS_FALLBACK = (U.JPEGLSLossless, U.JPEG2000Lossless, U.RLELossless, U.ExplicitVRLittleEndian)
_CANDIDATES: dict[str, tuple[str, ...]] = {
    U.ExplicitVRLittleEndian: (U.ExplicitVRLittleEndian,),
    U.ImplicitVRLittleEndian: (U.ImplicitVRLittleEndian,),
    U.DeflatedExplicitVRLittleEndian: (U.DeflatedExplicitVRLittleEndian,),
    U.ExplicitVRBigEndian: (U.ExplicitVRBigEndian,),
    U.RLELossless: (U.RLELossless, U.JPEGLSLossless, U.JPEG2000Lossless, U.ExplicitVRLittleEndian),
    U.JPEGLSLossless: (U.JPEGLSLossless, U.JPEG2000Lossless, U.RLELossless, U.ExplicitVRLittleEndian),
    U.JPEG2000Lossless: (U.JPEG2000Lossless, U.JPEGLSLossless, U.RLELossless, U.ExplicitVRLittleEndian),
    U.JPEGLossless: (U.JPEGLossless, *_LOSSLESS_FALLBACK),
    U.JPEGLosslessSV1: (U.JPEGLosslessSV1, *_LOSSLESS_FALLBACK),
    U.HTJ2KLossless: (U.JPEG2000Lossless, U.JPEGLSLossless, U.RLELossless, U.ExplicitVRLittleEndian),
    U.HTJ2KLosslessRPCL: (U.JPEG2000Lossless, U.JPEGLSLossless, U.RLELossless, U.ExplicitVRLittleEndian),
}


@dataclass(frozen=True)
class PixelLayout:
    """What decode_frames returns and encode_into writes: the Image Pixel values that
    describe the decoded array, which may differ from the source header (YBR -> RGB)."""

    frames: int
    rows: int
    cols: int
    samples: int
    bits_allocated: int
    bits_stored: int
    signed: bool
    photometric: str

    @property
    def shape(self) -> tuple[int, ...]:
        base = (self.frames, self.rows, self.cols)
        return (*base, self.samples) if self.samples > 1 else base

    @property
    def value_range(self) -> tuple[int, int]:
        """The stored-value range Bits Stored allows; anything outside it is invalid DICOM."""
        if self.signed:
            return -(1 << (self.bits_stored - 1)), (1 << (self.bits_stored - 1)) - 1
        return 0, (1 << self.bits_stored) - 1


# ----------------------------------------------------------------------------- decode


def syntax_of(ds: Dataset) -> U.UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if not ts:
        # a raw data set (no preamble, no meta, as old archives hold): pydicom read it in an
        # uncompressed encoding, which names its syntax when the pixel data is native
        implicit, little = getattr(ds, "original_encoding", (None, None))
        elem = ds.get("PixelData")
        native = elem is not None and not getattr(elem, "is_undefined_length", False)
        if native and implicit is not None and little is not None:
            if little:
                return U.ImplicitVRLittleEndian if implicit else U.ExplicitVRLittleEndian
            if not implicit:
                return U.ExplicitVRBigEndian
        raise UnsupportedInput("no transfer syntax in the file meta information")
    return U.UID(str(ts))


def _syntax_label(ts: U.UID) -> str:
    """A transfer syntax UID is not PHI, but an unknown value is only echoed if it looks
    like a UID, so a crafted header cannot smuggle text into a log line."""
    if ts.is_transfer_syntax:
        return ts.name
    return ts if re.fullmatch(r"[0-9.]{1,64}", ts) else "(not a UID)"


def _int_attr(ds: Dataset, keyword: str, default: int | None = None) -> int:
    try:
        value = ds.get(keyword, default)
        if value is None or value == "":
            if default is None:
                raise UnsupportedInput(f"image pixel attribute {keyword} is missing")
            return default
        return int(value)
    except (TypeError, ValueError):
        raise UnsupportedInput(f"image pixel attribute {keyword} is not an integer") from None


def _check_size(ds: Dataset) -> None:
    """Refuse before decoding: a crafted header must not make us allocate tens of GiB."""
    if "PixelData" not in ds:
        what = "float pixel data" if ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds) else "no pixel data"
        raise UnsupportedInput(f"{what} (only integer Pixel Data can be redacted)")
    rows, cols = _int_attr(ds, "Rows"), _int_attr(ds, "Columns")
    frames, samples = _int_attr(ds, "NumberOfFrames", 1) or 1, _int_attr(ds, "SamplesPerPixel", 1)
    bits = _int_attr(ds, "BitsAllocated")
    if min(rows, cols, frames, samples, bits) <= 0:
        raise UnsupportedInput("image pixel attributes are zero or negative")
    if rows * cols * frames * samples * max(1, (bits + 7) // 8) > MAX_DECODED_BYTES:
        raise UnsupportedInput("decoded pixel data would exceed 2 GiB")


def _as_array(ts: str, src: Dataset | bytes, **opts: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """pydicom's decoder with our plugin order: pyjpegls for JPEG-LS (5x faster than
    libjpeg here), then pylibjpeg, then whatever pydicom has. GDCM, which pydicom would try
    first, has codecs that abort the whole process (an uncaught C++ exception) instead of
    raising (seen here in its RLE and JPEG encoders), so it only runs as the last resort."""
    decoder = get_decoder(ts)
    available = decoder.available_plugins
    plugins = [p for p in ("pyjpegls", "pylibjpeg") if p in available and (p != "pyjpegls" or ts in U.JPEGLSTransferSyntaxes)]
    error: Exception | None = None
    for plugin in [*plugins, ""]:
        try:
            return decoder.as_array(src, decoding_plugin=plugin, **opts)
        except Exception as e:  # try the next plugin; the last error is the one reported
            error = e
    assert error is not None
    raise error


def _decode(ds: Dataset, index: int | None = None) -> tuple[np.ndarray, PixelLayout]:
    _check_size(ds)
    ts = syntax_of(ds)
    try:
        decoder = get_decoder(ts)
    except NotImplementedError:
        raise UnsupportedInput(f"unsupported transfer syntax {_syntax_label(ts)}") from None
    if not decoder.is_available:
        raise UnsupportedInput(f"no decoder installed for {_syntax_label(ts)}")
    try:
        # allow_excess_frames=False: the header's frame count is what gets re-encoded.
        arr, props = _as_array(ts, ds, index=index, as_rgb=False, allow_excess_frames=False)
    except Exception as e:  # decoders raise anything from ValueError to RuntimeError to struct.error
        raise UnsupportedInput(f"pixel data cannot be decoded ({type(e).__name__})") from None
    if ts in LOSSY_SYNTAXES and str(props["photometric_interpretation"]) in ("YBR_FULL", "YBR_FULL_422"):
        arr = _ybr_to_rgb(arr)  # the colour policy in the module docstring
        props = {**props, "photometric_interpretation": "RGB"}
    samples = int(props["samples_per_pixel"])
    nframes = 1 if index is not None else int(props["number_of_frames"])
    total = (_int_attr(ds, "NumberOfFrames", 1) or 1) if index is not None else nframes
    arr = arr.reshape((nframes, int(props["rows"]), int(props["columns"]), *((samples,) if samples > 1 else ())))
    if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not np.little_endian):
        arr = arr.astype(arr.dtype.newbyteorder("<"))  # big endian sources: redact in native order
    layout = PixelLayout(
        frames=total, rows=int(props["rows"]), cols=int(props["columns"]), samples=samples,
        bits_allocated=int(props["bits_allocated"]), bits_stored=int(props.get("bits_stored", props["bits_allocated"])),
        signed=int(props.get("pixel_representation", 0)) == 1, photometric=str(props["photometric_interpretation"]),
    )
    return arr, layout


YBR_CHUNK_ROWS = 64


def _ybr_to_rgb(arr: np.ndarray) -> np.ndarray:
    """pydicom's YBR_FULL -> RGB conversion (what its decoders' as_rgb applies), a band of
    rows at a time: the same arithmetic element by element, so the same values, but its
    float32 temporaries stay in cache (a 30-frame 512x512 clip: 0.8 s -> 0.1 s)."""
    from pydicom.pixels import convert_color_space

    out = np.empty(arr.shape, dtype=arr.dtype)
    flat = arr.reshape(-1, *arr.shape[-2:])  # (frames * rows, cols, 3)
    dst = out.reshape(flat.shape)
    for r in range(0, flat.shape[0], YBR_CHUNK_ROWS):
        dst[r:r + YBR_CHUNK_ROWS] = convert_color_space(flat[r:r + YBR_CHUNK_ROWS], "YBR_FULL", "RGB")
    return out


def decode(ds: Dataset) -> tuple[np.ndarray, PixelLayout]:
    """Every frame and the layout it is in, from a single decode."""
    return _decode(ds)


def decode_frames(ds: Dataset) -> np.ndarray:
    """Every frame as stored values, shape (frames, rows, cols[, samples]), little endian.

    Lossy YBR sources come back as RGB (see the module docstring); decoded_layout(ds)
    says which photometric interpretation the array is in.
    """
    return _decode(ds)[0]


def decoded_layout(ds: Dataset) -> PixelLayout:
    """The Image Pixel description of decode_frames(ds), from one decoded frame: the
    photometric interpretation can only be known after the decoder has run (a JPEG's own
    markers may override the header)."""
    return _decode(ds, index=0)[1]


# ----------------------------------------------------------------------------- redact


def _fill_values(frames: np.ndarray, fill: int | str, photometric: str | None) -> list[int]:
    """One value per sample. 'min'/'max' are the observed range of the stored values
    (always valid for the image's Bits Stored, whatever the sign; on MONOCHROME1 'min'
    displays white). For YBR the fill is luminance and the chroma samples get the neutral
    midpoint, so the box is grey rather than green or pink."""
    info = np.iinfo(frames.dtype)
    ybr = frames.ndim == 4 and frames.shape[3] == 3 and photometric in ("YBR_FULL", "YBR_FULL_422")
    if isinstance(fill, str):
        if fill not in ("min", "max"):
            raise ValueError("fill must be an integer, 'min' or 'max'")
        scope = frames[..., 0] if ybr else frames
        value = int(scope.min() if fill == "min" else scope.max()) if frames.size else 0
    elif isinstance(fill, (int, np.integer)) and not isinstance(fill, bool):
        value = int(fill)
        if not info.min <= value <= info.max:
            raise ValueError(f"fill {value} does not fit the pixel type {frames.dtype}")
    else:
        raise ValueError("fill must be an integer, 'min' or 'max'")
    samples = frames.shape[3] if frames.ndim == 4 else 1
    values = [value] * samples
    if ybr:
        neutral = 1 << (8 * frames.dtype.itemsize - 1) if info.min == 0 else 0
        values = [value, neutral, neutral]
    return values


RING = 2  # px around a group of boxes whose pixels say what lies behind it


def redact(frames: np.ndarray, boxes: Iterable[Box], fill: int | str = 0, *, photometric: str | None = None) -> np.ndarray:
    """A copy of frames with every box opaque; boxes are clipped to the image and a box
    with frame None covers every frame. Pixels outside the boxes are never written.

    photometric is the interpretation of frames (decoded_layout(ds).photometric); it only
    matters for YBR, where the fill applies to luminance and chroma is set neutral.
    """
    if frames.ndim not in (3, 4):
        raise ValueError("frames must be (frames, rows, cols) or (frames, rows, cols, samples)")
    if fill == "background":
        return _redact_background(frames, list(boxes))
    out = frames.copy()
    nframes, rows, cols = frames.shape[:3]
    values = _fill_values(frames, fill, photometric)
    fill_px = np.asarray(values, dtype=frames.dtype) if frames.ndim == 4 else frames.dtype.type(values[0])
    for box in boxes:
        x0, y0 = max(0, box.x), max(0, box.y)
        x1, y1 = min(cols, box.x + box.w), min(rows, box.y + box.h)
        if x1 <= x0 or y1 <= y0:
            continue
        if box.frame is None:
            out[:, y0:y1, x0:x1] = fill_px
        elif 0 <= box.frame < nframes:
            out[box.frame, y0:y1, x0:x1] = fill_px
        else:
            raise ValueError(f"box frame {box.frame} outside 0..{nframes - 1}")
    return out


def _redact_background(frames: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """Each box filled, frame by frame, with what lies behind it, taken from the unredacted
    frames so the result does not depend on the order boxes are listed in beyond overlaps:
    the value most of the box holds (a label patch, black), else one value shared by the
    boxes it touches, taken around them all (see
    :func:`phiscrub.pixels.ink.region_background`)."""
    from phiscrub.pixels.ink import patch_value, region_background, touching

    out = frames.copy()
    nframes, rows, cols = frames.shape[:3]
    clipped: list[Box] = []
    for box in boxes:
        x0, y0 = max(0, box.x), max(0, box.y)
        x1, y1 = min(cols, box.x + box.w), min(rows, box.y + box.h)
        if x1 <= x0 or y1 <= y0:
            continue
        if box.frame is not None and not 0 <= box.frame < nframes:
            raise ValueError(f"box frame {box.frame} outside 0..{nframes - 1}")
        clipped.append(Box(x0, y0, x1 - x0, y1 - y0, box.frame, box.reason))
    for group in touching(clipped, 2 * RING):
        members = [clipped[i] for i in group]
        shared = None
        for b in members:
            # a box on a label patch or on black vanishes into it; the others of the group
            # (over anatomy) share one value, what the whole group lies on: the patch's
            # value where most of the group is on it, else what lies around the group.
            # (Taking the anatomy boxes' value apart from the patches left a step between
            # a patch's fill and its neighbour's: JSL tune 'all' 0.901 -> 0.859.)
            behind = patch_value(frames, b)
            if behind is None:
                if shared is None:
                    shared = region_background(frames, members, RING)  # (frames, samples)
                behind = shared
            value = behind if frames.ndim == 4 else behind[:, 0]
            if b.frame is None:
                out[:, b.y:b.y + b.h, b.x:b.x + b.w] = value[:, None, None]
            else:
                out[b.frame, b.y:b.y + b.h, b.x:b.x + b.w] = value[b.frame]
    return out


# ----------------------------------------------------------------------------- encode


def _opts(layout: PixelLayout, photometric: str) -> dict[str, Any]:
    opts: dict[str, Any] = {
        "rows": layout.rows, "columns": layout.cols, "samples_per_pixel": layout.samples,
        "bits_allocated": layout.bits_allocated, "bits_stored": layout.bits_stored,
        "pixel_representation": int(layout.signed), "photometric_interpretation": photometric,
        "number_of_frames": layout.frames,
    }
    if layout.samples > 1:
        opts["planar_configuration"] = 0
    return opts


def _pydicom_encode(frames: np.ndarray, layout: PixelLayout, ts: str, photometric: str) -> list[bytes]:
    """pydicom's encoders, called directly rather than through compress(): nothing in ds
    changes until a candidate has round-tripped, and no new SOP Instance UID is minted."""
    encoder = get_encoder(ts)
    plugin = ""
    if ts == U.RLELossless:
        # Not GDCM: its RLE codec aborts the process on some frame sizes (3x3 RGB).
        plugin = "pylibjpeg" if "pylibjpeg" in encoder.available_plugins else "pydicom"
    src = frames[0] if layout.frames == 1 else frames
    return [bytes(f) for f in encoder.iter_encode(src, encoding_plugin=plugin, **_opts(layout, photometric))]


def _gdcm_encode(frames: np.ndarray, layout: PixelLayout, ts: str, photometric: str) -> list[bytes]:
    """JPEG Lossless (process 14 / SV1): pydicom has no encoder for it, GDCM has. This is
    the in-memory gdcm.Image set-up pydicom's own GDCM RLE plugin uses, pointed at the
    JPEG lossless codec, one codestream per frame."""
    import gdcm  # lazy: the import is slow and only this syntax needs it

    # GDCM aborts the process (not an exception) for 8-bit containers with fewer bits
    # stored; only hand it the formats it was seen to handle.
    if not ((layout.bits_allocated == 8 and layout.bits_stored == 8) or layout.bits_allocated == 16):
        raise ValueError("pixel format not offered to GDCM")
    kind = {U.JPEGLossless: gdcm.TransferSyntax.JPEGLosslessProcess14, U.JPEGLosslessSV1: gdcm.TransferSyntax.JPEGLosslessProcess14_1}
    pi = gdcm.PhotometricInterpretation.GetPIType(photometric)
    if pi == gdcm.PhotometricInterpretation.PI_END:
        raise ValueError("photometric interpretation unknown to GDCM")
    out = []
    for frame in frames:
        writer = gdcm.ImageWriter()  # gdcm.Image objects must be owned by a writer to live
        image = writer.GetImage()
        image.SetNumberOfDimensions(2)
        image.SetDimensions((layout.cols, layout.rows, 1))
        image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(pi))
        image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.ImplicitVRLittleEndian))
        bs = layout.bits_stored
        image.SetPixelFormat(gdcm.PixelFormat(layout.samples, layout.bits_allocated, bs, bs - 1, int(layout.signed)))
        if layout.samples > 1:
            image.SetPlanarConfiguration(0)
        elem = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
        elem.SetByteStringValue(np.ascontiguousarray(frame).tobytes())
        image.SetDataElement(elem)
        change = gdcm.ImageChangeTransferSyntax()
        change.SetTransferSyntax(gdcm.TransferSyntax(kind[ts]))
        change.SetInput(image)
        if not change.Change():
            raise RuntimeError("GDCM could not encode the frame")
        seq = change.GetOutput().GetDataElement().GetSequenceOfFragments()
        if seq is None or seq.GetNumberOfFragments() != 1:
            raise RuntimeError("GDCM returned an unexpected fragment layout")
        out.append(seq.GetFragment(0).GetByteValue().GetBuffer().encode("utf-8", "surrogateescape"))
    return out


_ENCODERS: dict[str, Callable[[np.ndarray, PixelLayout, str, str], list[bytes]]] = {
    U.RLELossless: _pydicom_encode, U.JPEGLSLossless: _pydicom_encode, U.JPEG2000Lossless: _pydicom_encode,
    U.JPEGLossless: _gdcm_encode, U.JPEGLosslessSV1: _gdcm_encode,
}


def _round_trips(fragments: list[bytes], frames: np.ndarray, layout: PixelLayout, ts: str, photometric: str) -> bool:
    """Encoders have had bit-depth and sign bugs; losslessness is checked, not trusted."""
    for i, fragment in enumerate(fragments):
        opts = _opts(layout, photometric) | {"number_of_frames": 1, "as_rgb": False}
        got, _ = _as_array(ts, encapsulate([fragment]), **opts)
        if got.shape != frames[i].shape or not np.array_equal(got, frames[i]):
            return False
    return True


def _native_bytes(frames: np.ndarray, layout: PixelLayout, little_endian: bool) -> bytes:
    """Native Pixel Data bytes. Written here because pydicom's set_pixel_data refuses
    32-bit, 1-bit and big endian data and rewrites the whole Image Pixel module from the
    array. Containers of 8 bits or fewer are written as OB, which has no byte order."""
    if layout.bits_allocated == 1:
        data = pack_bits(frames.ravel(), pad=False)
    else:
        data = frames.astype(frames.dtype.newbyteorder("<" if little_endian else ">"), copy=False).tobytes()
    return data + b"\x00" if len(data) % 2 else data


def _is_lossy_source(ds: Dataset, ts: str) -> bool:
    return ts in LOSSY_SYNTAXES or str(ds.get("LossyImageCompression", "")).strip() == "01"


def _set_lossy_history(ds: Dataset, ts: str, source_bytes: int, layout: PixelLayout) -> None:
    """Once lossy, always lossy (PS3.3 C.7.6.1.1.5): keep '01' and the earlier ratio and
    method; if a lossy syntax is the only record of it, add them. The lossless re-encode
    itself adds no ratio or method value."""
    ds.LossyImageCompression = "01"
    if ts in LOSSY_SYNTAXES and "LossyImageCompressionMethod" not in ds and "LossyImageCompressionRatio" not in ds:
        ds.LossyImageCompressionMethod = LOSSY_METHOD[ts]
        raw = layout.rows * layout.cols * layout.samples * layout.frames * max(1, layout.bits_allocated // 8)
        if source_bytes and raw >= source_bytes:  # tiny images: codec overhead is not a ratio
            ds.LossyImageCompressionRatio = f"{raw / source_bytes:.4g}"


def encode_into(ds: Dataset, frames: np.ndarray, layout: PixelLayout | None = None) -> str:
    """Replace ds.PixelData with frames, losslessly, and return the transfer syntax used.

    frames must be decode_frames(ds) or redact() of it; ``layout``, the layout decode(ds)
    returned with them, saves decoding a frame again to learn it. The source syntax is kept where an
    encoder exists and the result round-trips; otherwise the module docstring's table says
    what is written instead. Updates the file meta Transfer Syntax UID, Photometric
    Interpretation, Planar Configuration, Smallest/Largest Image Pixel Value (if present)
    and the lossy-compression history; SOP Instance UID is left to the caller.
    """
    source_ts = syntax_of(ds)
    layout = layout or decoded_layout(ds)
    if frames.shape != layout.shape:
        raise ValueError(f"frames shape {frames.shape} does not match the image {layout.shape}")
    want = np.dtype(f"{'i' if layout.signed else 'u'}{max(1, layout.bits_allocated // 8)}")
    if frames.dtype.kind != want.kind or frames.dtype.itemsize != want.itemsize:
        raise ValueError(f"frames dtype {frames.dtype} does not match the image ({want})")
    lo, hi = layout.value_range
    if frames.size and (int(frames.min()) < lo or int(frames.max()) > hi):
        raise UnsupportedInput("pixel values outside the range Bits Stored allows (check the fill value)")
    frames = np.ascontiguousarray(frames.astype(want.newbyteorder("<"), copy=False))
    lossy_source = _is_lossy_source(ds, source_ts)
    source_bytes = len(ds.PixelData) if source_ts.is_encapsulated else 0

    chosen: str | None = None
    fragments: list[bytes] = []
    photometric = layout.photometric
    for ts in _CANDIDATES.get(source_ts, _LOSSLESS_FALLBACK):
        if not U.UID(ts).is_compressed:
            chosen = ts
            break
        if layout.bits_allocated == 1:
            continue  # no lossless codec takes 1-bit data
        pi = photometric
        if ts == U.JPEG2000Lossless and pi == "RGB" and str(ds.get("PhotometricInterpretation", "")) == "YBR_RCT":
            pi = "YBR_RCT"  # openjpeg applies the reversible colour transform, as in the source
        try:
            encoded = _ENCODERS[ts](frames, layout, ts, pi)
            if _round_trips(encoded, frames, layout, ts, pi):
                chosen, fragments, photometric = ts, encoded, pi
                break
        except Exception:  # a candidate that fails just hands over to the next
            continue
    if chosen is None:  # unreachable: every list ends in a native syntax
        raise UnsupportedInput("no lossless encoder accepted the image")

    if U.UID(chosen).is_compressed:
        ds.PixelData = encapsulate(fragments)  # one fragment per frame, Basic Offset Table
        elem = ds["PixelData"]
        elem.VR, elem.is_undefined_length = VR.OB, True
    else:
        ds.PixelData = _native_bytes(frames, layout, U.UID(chosen).is_little_endian)
        elem = ds["PixelData"]
        elem.VR, elem.is_undefined_length = (VR.OW if layout.bits_allocated > 8 else VR.OB), False
    for kw in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if kw in ds:
            del ds[kw]
    if not hasattr(ds, "file_meta") or ds.file_meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = U.UID(chosen)
    ds.PhotometricInterpretation = photometric
    if layout.samples > 1:
        ds.PlanarConfiguration = 0  # every encoder here was given colour-by-pixel data
    elif "PlanarConfiguration" in ds:
        del ds.PlanarConfiguration
    for kw, value in (("SmallestImagePixelValue", frames.min()), ("LargestImagePixelValue", frames.max())):
        if kw in ds and frames.size:
            ds[kw].value = int(value)
    if lossy_source:
        _set_lossy_history(ds, source_ts, source_bytes, layout)
    return str(chosen)


# ----------------------------------------------------------------------------- checks


def round_trip_equal(original: np.ndarray, redacted_ds: Dataset, boxes: Iterable[Box], fill: int | str = 0) -> bool:
    """True if decoding redacted_ds gives exactly redact(original, boxes, fill): every
    pixel outside the boxes bit-identical to the source, every pixel inside equal to the
    fill. The verification step the pipeline and the tests share."""
    got, layout = _decode(redacted_ds)
    expected = redact(original, list(boxes), fill, photometric=layout.photometric)
    return got.shape == expected.shape and got.dtype.kind == expected.dtype.kind and bool(np.array_equal(got, expected))
