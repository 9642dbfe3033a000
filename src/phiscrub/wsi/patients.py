"""Whose slide is it: the identity a slide's date offset is keyed on.

Why: dates keep their intervals only within one offset. Keyed on the slide alone, two
slides of one patient (or a slide and the patient's DICOM studies) would move by different
amounts and the interval between them would be lost. So the offset is keyed on the patient
wherever the slide says who that is, in the same form the DICOM path uses
(``id:<issuer>:<patient id>``), so that slides and studies of one patient agree:

1. a patient field the format carries (Philips DICOM_PATIENT_ID; DICOM WSI goes through the
   DICOM path, which keys on PatientID already);
2. otherwise the user's CSV (``wsi.patients``), looked up by the slide's barcode, then by
   its file name, then by its file name without the extension;
3. otherwise the slide itself (its content identity): its dates still move together.

Nothing here is logged or recorded but which of the three decided.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from phiscrub.wsi.registry import SlideJob


def _decoded(value: str) -> list[str]:
    """A barcode as written and, where it is Base64 text (SCN, Philips), as decoded."""
    out = [value]
    try:
        raw = base64.b64decode(value, validate=True).decode("utf-8")
        if raw.isprintable() and raw.strip():
            out.append(raw.strip())
    except (binascii.Error, ValueError):
        pass
    return out


def mapped(job: SlideJob, barcode: str | None, name: str) -> str | None:
    """The patient identity ``wsi.patients`` gives a slide with this barcode or file name."""
    mapping = dict(job.config.wsi.patients)
    if not mapping:
        return None
    keys = _decoded(barcode.strip()) if barcode and barcode.strip() else []
    for k in [*keys, name, name.split(".", 1)[0]]:
        if k in mapping:
            return mapping[k]
    return None


def slide_identity(job: SlideJob, src: Path, vendor: Any, t: Any, content_id: str) -> tuple[str, str]:
    """(identity, what decided: 'patient field', 'mapping' or 'slide')."""
    ask = getattr(vendor, "patient", None)
    ident = ask(t) if ask is not None else None
    if ident:
        return ident, "patient field"
    if job.config.wsi.patients:
        code = getattr(vendor, "barcode", None)
        ident = mapped(job, code(t) if code is not None else None, src.name)
        if ident:
            return ident, "mapping"
    return "slide:" + content_id, "slide"
