"""Reads a Google Cloud Healthcare API DeidentifyConfig JSON into a phiscrub policy.

Mapping (documented in docs/configuration.md):
  dicom.filterProfile / dicomTagConfig.profileType
      MINIMAL_KEEP_LIST_PROFILE -> profile minimal; ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE
      -> basic; KEEP_ALL_PROFILE -> keep_all; DEIDENTIFY_TAG_CONTENTS -> deidentify_tag_contents;
      *_UNSPECIFIED or absent -> minimal (Google's default).
  dicom.keepList.tags   -> keep overrides;   dicom.removeList.tags -> remove overrides.
  dicom.skipIdRedaction -> option retain_uids.
  dicomTagConfig.options.cleanDescriptors -> clean_descriptors;
      .cleanImage -> clean_pixel_data; .primaryIds KEEP -> retain_uids (REGEN: default).
  dicomTagConfig.actions[].queries with keepTag/removeTag/deleteTag/resetTag/cleanTextTag/
      regenUidTag/recurseTag/cleanImageTag -> overrides keep/empty/remove/dummy/clean_text/
      regenerate_uid/keep (sequences are always recursed)/keep (pixels follow clean_pixel_data).
"""

from __future__ import annotations

from typing import Any

from phiscrub.errors import ConfigError
from phiscrub.policy.actions import Action, Option
from phiscrub.policy.config import Config, parse_overrides
from phiscrub.policy.profile import Policy

PROFILE_MAP = {
    "MINIMAL_KEEP_LIST_PROFILE": "minimal",
    "ATTRIBUTE_CONFIDENTIALITY_BASIC_PROFILE": "basic",
    "KEEP_ALL_PROFILE": "keep_all",
    "DEIDENTIFY_TAG_CONTENTS": "deidentify_tag_contents",
    "TAG_FILTER_PROFILE_UNSPECIFIED": "minimal",
    "PROFILE_TYPE_UNSPECIFIED": "minimal",
}
ACTION_MAP = {
    "keepTag": "keep",
    "removeTag": "empty",
    "deleteTag": "remove",
    "resetTag": "dummy",
    "cleanTextTag": "clean_text",
    "regenUidTag": "regenerate_uid",
    "recurseTag": "keep",
    "cleanImageTag": "keep",
}


def from_google(doc: dict[str, Any]) -> Config:
    if "dicom" not in doc and "dicomTagConfig" not in doc:
        raise ConfigError("config: a Google DeidentifyConfig needs 'dicom' or 'dicomTagConfig'")
    dicom = doc.get("dicom") or {}
    tagcfg = doc.get("dicomTagConfig") or {}
    prof_name = tagcfg.get("profileType") or dicom.get("filterProfile") or "MINIMAL_KEEP_LIST_PROFILE"
    if prof_name not in PROFILE_MAP:
        raise ConfigError(f"dicom.filterProfile: unknown {prof_name!r}")
    options: set[Option] = set()
    entries: list[dict[str, Any]] = []
    for t in (dicom.get("keepList") or {}).get("tags", []):
        entries.append({"select": t, "action": "keep"})
    for t in (dicom.get("removeList") or {}).get("tags", []):
        entries.append({"select": t, "action": "remove"})
    if dicom.get("skipIdRedaction"):
        options.add(Option.RETAIN_UIDS)
    gopts = tagcfg.get("options") or {}
    if "cleanDescriptors" in gopts:
        options.add(Option.CLEAN_DESCRIPTORS)
    if "cleanImage" in gopts:
        options.add(Option.CLEAN_PIXEL_DATA)
    if gopts.get("primaryIds") == "KEEP":
        options.add(Option.RETAIN_UIDS)
    for i, act in enumerate(tagcfg.get("actions") or []):
        kinds = [k for k in ACTION_MAP if k in act]
        if len(kinds) != 1:
            raise ConfigError(f"dicomTagConfig.actions[{i}]: needs exactly one action")
        for q in act.get("queries") or []:
            entries.append({"select": q, "action": ACTION_MAP[kinds[0]]})
    try:
        policy = Policy(
            profile=PROFILE_MAP[prof_name],
            options=frozenset(options),
            overrides=parse_overrides(entries, "google"),
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None
    _ = Action  # actions come in by name through parse_overrides
    from phiscrub.policy.config import NO_PIXEL_CLEANING

    notes = [] if Option.CLEAN_PIXEL_DATA in options else [NO_PIXEL_CLEANING]
    return Config(policy=policy, source="google", notes=notes)
