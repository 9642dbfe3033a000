"""Coded choices of the policy, as enums, so a typo fails at load time, not at run time."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    """What happens to one attribute.

    The first six are PS3.15 Annex E's codes; the rest are the finer actions a per-tag
    override can ask for (the role of Google Healthcare API's DicomTagConfig actions).
    """

    KEEP = "K"
    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    CLEAN = "C"
    UID = "U"
    PSEUDONYMIZE = "pseudonymize"
    SHIFT_DATE = "shift_date"
    CLEAN_TEXT = "clean_text"

    @classmethod
    def from_name(cls, name: str) -> Action:
        key = name.strip().lower().replace("-", "_").replace(" ", "_")
        if key in _OVERRIDE_NAMES:
            return _OVERRIDE_NAMES[key]
        try:
            return cls(name.strip().upper())
        except ValueError:
            raise ValueError(
                f"unknown action {name!r}; use one of {sorted(_OVERRIDE_NAMES)}"
            ) from None


_OVERRIDE_NAMES = {
    "keep": Action.KEEP,
    "remove": Action.REMOVE,
    "delete": Action.REMOVE,
    "empty": Action.EMPTY,
    "dummy": Action.DUMMY,
    "pseudonymize": Action.PSEUDONYMIZE,
    "regenerate_uid": Action.UID,
    "shift_date": Action.SHIFT_DATE,
    "clean_text": Action.CLEAN_TEXT,
    "clean": Action.CLEAN,
}


class Option(StrEnum):
    """PS3.15 Annex E options, with their CID 7050 code (DCM) for the output header."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain_longitudinal_full_dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain_longitudinal_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"
    CLEAN_PIXEL_DATA = "clean_pixel_data"
    CLEAN_RECOGNIZABLE_VISUAL_FEATURES = "clean_recognizable_visual_features"

    @property
    def code(self) -> tuple[str, str]:
        return _CID_7050[self]


BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")

_CID_7050 = {
    Option.CLEAN_PIXEL_DATA: ("113101", "Clean Pixel Data Option"),
    Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES: (
        "113102",
        "Clean Recognizable Visual Features Option",
    ),
    Option.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    Option.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_LONGITUDINAL_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    Option.RETAIN_SAFE_PRIVATE: ("113111", "Retain Safe Private Option"),
    Option.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}

# Options never claimed from the policy alone: accepted, recorded in the manifest and policy
# hash, and claimed in DeidentificationMethodCodeSequence only by an output the pixel step
# ran on (and, for faces, whose re-check passed): deid_attrs.performed_options.
NOT_PERFORMED_HERE = frozenset(
    {Option.CLEAN_PIXEL_DATA, Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES}
)
