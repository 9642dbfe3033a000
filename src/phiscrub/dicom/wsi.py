"""DICOM whole-slide microscopy: the instances that picture the glass (LABEL, OVERVIEW)
follow config.wsi like a TIFF slide's label and macro, and specimen/slide identifiers get
keyed pseudonyms (the header engine asks :func:`keyed_identifier_tags`).

remove drops the instance: :class:`DroppedByPolicy` is raised before anything is written,
so the runner records it with that reason and writes no output for it. Why not keep a
blank instance: a user who asks for the label to be removed expects no label in the
series, as with a TIFF slide whose label directory is unlinked; blank is there for
viewers that want one. blank and replace re-encode through pixels.codec, which keeps the
transfer syntax and the lossy-compression history truthful.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from phiscrub.errors import DroppedByPolicy

VL_WSM = "1.2.840.10008.5.1.4.1.1.77.1.6"


@cache
def _spec() -> dict:
    return yaml.safe_load(resources.files("phiscrub.policy.data").joinpath("wsi/dicom_wsi.yaml").read_text())


@cache
def keyed_identifier_tags() -> frozenset[int]:
    out = set()
    for kw in _spec()["keyed_identifiers"]:
        tag = tag_for_keyword(kw)
        if tag is None:
            raise ValueError(f"wsi/dicom_wsi.yaml: unknown keyword {kw}")
        out.add(int(tag))
    return frozenset(out)


def associated_role(ds: Dataset) -> str | None:
    """'label' or 'macro' for a LABEL or OVERVIEW whole-slide instance, else None."""
    if str(ds.get("SOPClassUID", "")) != VL_WSM:
        return None
    image_type = ds.get("ImageType")
    values = list(image_type) if image_type is not None and not isinstance(image_type, str) else [image_type or ""]
    if len(values) < 3:
        return None
    return _spec()["associated"].get(str(values[2]).strip().upper())


def slide_pseudonym(ds: Dataset, keys) -> str:
    """What a replacement label shows: the same keyed value the header gives the
    Container Identifier (the slide's ID), so label and header agree."""
    container = str(ds.get("ContainerIdentifier", "") or "").strip()
    if container:
        return keys.value_pseudonym(container, 12)
    from phiscrub.dicom.identity import patient_identity

    return keys.patient_id(patient_identity(ds))


def apply_associated(ds: Dataset, config, keys) -> dict | None:
    """Apply config.wsi to a LABEL or OVERVIEW instance; None for any other instance."""
    role = associated_role(ds)
    if role is None:
        return None
    action = config.wsi.label if role == "label" else config.wsi.macro
    if action == "remove":
        what = "label" if role == "label" else "overview"
        raise DroppedByPolicy(f"{what} image removed by policy")
    from phiscrub.pixels import codec

    frames, layout = codec.decode(ds)
    notes = []
    if action == "replace":
        frames = _label_frames(frames, layout, slide_pseudonym(ds, keys))
        burned = "YES"  # the pseudonym is written in the pixels
    else:
        if action == "redact":  # where the label sits on the overview is not recorded
            notes.append("label position unknown: whole overview blanked")
        frames = frames * 0
        burned = "NO"
    syntax = codec.encode_into(ds, frames, layout)
    ds.BurnedInAnnotation = burned
    done = {"replace": "replaced", "blank": "blanked", "redact": "blanked"}[action]
    return {"role": role, "action": done, "transfer_syntax": syntax, "notes": notes}


def _label_frames(frames, layout, text: str):
    """White frames with the pseudonym in black, in the image's own shape and range."""
    import numpy as np

    from phiscrub.wsi.labels import render_label  # the label every slide format gets

    ink = render_label(layout.cols, layout.rows, text)[..., 0] < 128
    lo, hi = layout.value_range
    out = np.empty_like(frames)
    white, black = (lo, hi) if layout.photometric == "MONOCHROME1" else (hi, lo)
    out[...] = white
    if out.ndim == 4:  # frames, rows, cols, samples
        out[:, ink, :] = black
    else:
        out[:, ink] = black
    return out
