"""The pure step: (item bytes, config, key) -> (output bytes, relative path, manifest).

It knows nothing of where the bytes came from or go to, so the CLI, a service and a
cluster all run this same function. The manifest is PHI-free: tags, actions and counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from phiscrub.dicom import header, identity, quiet  # noqa: F401  (silences value-quoting warnings)
from phiscrub.dicom import wsi as dicom_wsi
from phiscrub.dicom.deid_attrs import stamp
from phiscrub.dicom.reader import check_readable, read_instance
from phiscrub.dicom.text import PhiTerms
from phiscrub.dicom.writer import encode
from phiscrub.keys import KeyRing
from phiscrub.policy import annex_e
from phiscrub.policy.actions import Action, Option
from phiscrub.policy.config import Config

IMPLEMENTATION_CLASS_UID = "2.25.196841393125447392735463283905339217473"
IMPLEMENTATION_VERSION = "PHISCRUB_010"
_META_DROP = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)
_SAFE_COMPONENT = re.compile(r"[^0-9A-Za-z.\-]")


@dataclass
class Outcome:
    data: bytes
    relpath: str
    manifest: dict = field(default_factory=dict)


def needs_terms(config: Config) -> bool:
    p = config.policy
    return (
        p.has(Option.CLEAN_DESCRIPTORS)
        or p.has(Option.CLEAN_STRUCTURED_CONTENT)
        or p.has(Option.RETAIN_PATIENT_CHARACTERISTICS)
        or p.has(Option.CLEAN_GRAPHICS)
        or any(o.action in (Action.CLEAN_TEXT, Action.CLEAN) for o in p.overrides)
    )


def transform_dicom(data: bytes, config: Config, keys: KeyRing, policy_hash: str) -> Outcome:
    return transform_dataset(read_instance(data), config, keys, policy_hash)


def transform_dataset(ds, config: Config, keys: KeyRing, policy_hash: str, terms: PhiTerms | None = None) -> Outcome:
    """The same step on an already parsed dataset (the runner parses once, so the verifier
    can read the source values before the transform changes them in place). ``terms``: the
    values free text is cleaned of, when the caller knows more than this instance holds
    (its whole study's, from the job's pre-pass); else they are read from the instance."""
    policy = config.policy
    # a whole-slide label or overview: dropped, blanked or replaced as config.wsi says
    associated = dicom_wsi.apply_associated(ds, config, keys)
    who = identity.patient_identity(ds)
    if terms is None:
        terms = identity.collect_terms(ds) if needs_terms(config) else PhiTerms()
    pixel_outcome = None
    if policy.has(Option.CLEAN_PIXEL_DATA):
        # before the header pass: it needs the original names, IDs and device identity
        from phiscrub.pixels import clean_pixels

        pixel_outcome = clean_pixels(ds, config.pixels)
        if policy.has(Option.CLEAN_GRAPHICS):  # overlays are kept: their bits are pixels too
            from phiscrub.pixels import clean_overlays

            pixel_outcome.boxes.extend(clean_overlays(ds, config.pixels))
    face_outcome = None
    if policy.has(Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES):
        # after the text pass, on its output: faces are filled in the pixels it wrote
        from phiscrub.pixels.faces import clean_faces

        face_outcome = clean_faces(ds, config.pixels)
    iod = annex_e.iod_for_sop_class(ds.get("SOPClassUID"))
    ctx = header.InstanceContext(
        policy=policy,
        keys=keys,
        iod=iod,
        identity=who,
        date_offset=keys.date_offset(who, policy.date_shift_min, policy.date_shift_max),
        terms=terms,
        extra_patterns=config.text_patterns,
    )
    transfer_syntax = _transfer_syntax(ds)
    header.walk(ds, ctx)
    stamp(ds, policy, policy_hash, pixels_cleaned=bool(pixel_outcome and pixel_outcome.performed),
          faces_cleaned=bool(face_outcome and face_outcome.performed))
    _rebuild_meta(ds, ctx, transfer_syntax)
    check_readable(ds)  # kept elements go out raw: a damaged one would make an unreadable output
    if not UID(transfer_syntax).is_implicit_VR and any(getattr(r, "VR", "x") is None for r in ds._dict.values()):
        for _ in ds.iterall():  # read as implicit but declared explicit: give every element its VR
            pass
    ds.preamble = b"\x00" * 128  # a preamble can hold anything (TIFF headers, text)
    data = encode(ds)  # save_as's bytes, unchanged elements written as read (dicom/writer.py)
    relpath = output_relpath(ds, keys, who)
    manifest = {
        "sop_class": str(ds.get("SOPClassUID", "")),
        "iod": iod,
        "transfer_syntax": str(transfer_syntax),
        "actions": _compact_actions(ctx.counts),
        "uids_remapped": ctx.uids_mapped,
        "options_recorded": sorted(o.value for o in policy.options),
    }
    if pixel_outcome is not None:
        manifest["pixels"] = pixel_outcome.manifest()
    if face_outcome is not None:
        manifest["faces"] = face_outcome.manifest()
        if face_outcome.boxes:  # the audit's pixel boxes are the pixels section's
            pixels = manifest.setdefault("pixels", {"performed": False, "mode": "none", "boxes": []})
            pixels["boxes"] = [*pixels.get("boxes", []), *(b.manifest() for b in face_outcome.boxes)]
    if associated is not None:
        manifest["wsi_associated"] = associated
    return Outcome(data, relpath, manifest)


def _compact_actions(counts) -> dict[str, object]:
    """Per-tag actions for standard attributes; private ones only as a count (a CT can
    carry hundreds, and their tags say nothing a reader of the audit needs)."""
    out: dict[str, object] = {}
    private = 0
    for (tag, action), n in sorted(counts.items()):
        if (tag >> 16) & 1 and action == "X":
            private += n
        else:
            out.setdefault(action, []).append(f"{tag:08X}" if n == 1 else f"{tag:08X}x{n}")
    if private:
        out["private_removed"] = private
    return out


def _transfer_syntax(ds) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return str(ts)
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _rebuild_meta(ds, ctx: header.InstanceContext, transfer_syntax: str) -> None:
    old = getattr(ds, "file_meta", None) or FileMetaDataset()
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID") or old.get("MediaStorageSOPClassUID")
    sop = ds.get("SOPInstanceUID")
    if sop is None and old.get("MediaStorageSOPInstanceUID"):
        src = str(old.MediaStorageSOPInstanceUID)
        sop = src if ctx.policy.has(Option.RETAIN_UIDS) else ctx.keys.uid(src)
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    for t in _META_DROP:
        if t in meta:
            del meta[t]
    ds.file_meta = meta


def _component(value: object, fallback: str) -> str:
    text = _SAFE_COMPONENT.sub("_", str(value or "").strip())
    return text[:64] if text else fallback


def output_relpath(ds, keys: KeyRing, who: str) -> str:
    """<patient pseudonym>/<study UID>/<series UID>/<SOP UID>.dcm, from output values only."""
    patient = keys.patient_id(who)
    study = _component(ds.get("StudyInstanceUID"), "study-unknown")
    series = _component(ds.get("SeriesInstanceUID"), "series-unknown")
    sop = _component(ds.get("SOPInstanceUID"), "instance-" + keys.token("instance", who))
    return f"{patient}/{study}/{series}/{sop}.dcm"
