"""The attributes that tell a reader what was done: PS3.15 E.1.1 and CID 7050."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from phiscrub import __version__
from phiscrub.policy.actions import BASIC_PROFILE_CODE, NOT_PERFORMED_HERE, Option
from phiscrub.policy.profile import Policy


def performed_options(policy: Policy, pixels_cleaned: bool = False, faces_cleaned: bool = False) -> list[Option]:
    """The options this output may claim: the pixel steps only where they ran on it (and,
    for faces, the re-check passed)."""
    done = [o for o in Option if o in policy.options and o not in NOT_PERFORMED_HERE]
    if pixels_cleaned:
        done.insert(0, Option.CLEAN_PIXEL_DATA)
    if faces_cleaned:
        done.append(Option.CLEAN_RECOGNIZABLE_VISUAL_FEATURES)
    return done


_PREBUILT: dict[str, list] = {}


def stamp(ds: Dataset, policy: Policy, policy_hash: str, pixels_cleaned: bool = False, faces_cleaned: bool = False) -> None:
    """Adds the attributes; built once per policy and shared, since every output of a run
    carries the same ones (they are only ever written, never changed)."""
    key = f"{policy_hash}:{pixels_cleaned}:{faces_cleaned}"
    elems = _PREBUILT.get(key)
    if elems is None:
        proto = Dataset()
        _build(proto, policy, policy_hash, pixels_cleaned, faces_cleaned)
        elems = _PREBUILT[key] = list(proto._dict.values())
    for elem in elems:
        ds._dict[elem.tag] = elem


def _build(ds: Dataset, policy: Policy, policy_hash: str, pixels_cleaned: bool, faces_cleaned: bool) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [
        f"phiscrub {__version__}",
        f"PS3.15 E.1 {policy.profile} profile",
        f"policy sha256:{policy_hash[:32]}",
    ]
    items = []
    codes = [BASIC_PROFILE_CODE] if policy.profile != "keep_all" else []
    codes += [o.code for o in performed_options(policy, pixels_cleaned, faces_cleaned)]
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if Option.RETAIN_LONGITUDINAL_FULL_DATES in policy.options or policy.profile == "keep_all":
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in policy.options:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"
