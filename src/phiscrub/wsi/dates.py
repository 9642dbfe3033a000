"""One rule for every date and time a slide holds, whatever the vendor and wherever it sits.

Why one rule: a slide repeats its scan time in several places (an Aperio SVS writes it in
the description's Date and Time and again in TIFF DateTime). When each place had its own
rule, one kept what another removed and the verifier rightly found the removed time inside
the kept one. The rule is DICOM's, so that a patient's slides and studies agree:

- retain_longitudinal_full_dates: dates and times are kept;
- retain_longitudinal_modified_dates: dates move by the patient's whole-day offset (the
  date part of a date-time too) and times of day are kept, as DICOM keeps TM under it;
- neither: dates, times and date-times are removed.

A field list names a field's kind (``date``, ``time`` or ``datetime``), never what to do
with it: the policy's options decide that here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from phiscrub.policy.actions import Option
from phiscrub.wsi.fields import shift_date_text

if TYPE_CHECKING:
    from phiscrub.policy.profile import Policy

KINDS = ("date", "time", "datetime")


def mode(policy: Policy) -> str:
    """'keep', 'shift' or 'remove': what the policy does to a slide's dates."""
    if policy.has(Option.RETAIN_LONGITUDINAL_FULL_DATES):
        return "keep"
    if policy.has(Option.RETAIN_LONGITUDINAL_MODIFIED_DATES):
        return "shift"
    return "remove"


def apply(kind: str, value: str, policy: Policy, days: int) -> tuple[str | None, str]:
    """The new value (None: remove) and the action taken, for the manifest.

    A date that does not parse cannot be shifted, so it is removed: when in doubt, remove."""
    if kind not in KINDS:
        raise ValueError(f"unknown date kind {kind!r}")
    m = mode(policy)
    if m == "keep" or (m == "shift" and kind == "time"):
        return value, "keep"
    if m == "remove":
        return None, "remove"
    new = shift_date_text(value, days)
    return (new, "shift_date") if new is not None else (None, "remove")
