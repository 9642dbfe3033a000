"""Date shifting for DA and DT values, and age generalisation for AS.

Whole-day offsets keep every interval and keep date/time pairs consistent; the time of
day and a DT's UTC offset suffix are left as they are.
"""

from __future__ import annotations

import datetime as _dt
import re

_DT = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(.*)$")


def shift_da(value: str, days: int) -> str | None:
    """Shift one DA value; None if it is not a date (the caller then removes it)."""
    v = value.strip()
    if not v:
        return v
    if "-" in v and len(v) == 17:  # a DA range "YYYYMMDD-YYYYMMDD" in a query
        a, b = v.split("-")
        sa, sb = shift_da(a, days), shift_da(b, days)
        return None if sa is None or sb is None else f"{sa}-{sb}"
    v = v.replace(".", "")  # ACR-NEMA "YYYY.MM.DD"
    m = _DT.match(v)
    if not m or m.group(4):
        return None
    return _shift_parts(m.group(1), m.group(2), m.group(3), days)


def shift_dt(value: str, days: int) -> str | None:
    v = value.strip()
    if not v:
        return v
    m = _DT.match(v)
    if not m:
        return None
    rest = m.group(4) or ""
    if rest and not re.match(r"^[0-9.+\-]*$", rest):
        return None
    if not m.group(2) or not m.group(3):
        shifted = _shift_parts(m.group(1), m.group(2), m.group(3), days)
        return None if shifted is None else shifted + rest
    shifted = _shift_parts(m.group(1), m.group(2), m.group(3), days)
    return None if shifted is None else shifted + rest


def _shift_parts(y: str, mo: str | None, d: str | None, days: int) -> str | None:
    try:
        base = _dt.date(int(y), int(mo or 1), int(d or 1))
        new = base + _dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    if d:
        return new.strftime("%Y%m%d")
    if mo:
        return new.strftime("%Y%m")
    return new.strftime("%Y")


def generalise_age(value: str) -> str:
    """HIPAA Safe Harbor: ages over 89 become '090Y' (90 or older)."""
    v = value.strip().upper()
    m = re.match(r"^(\d{3})([DWMY])$", v)
    if not m:
        return v
    n, unit = int(m.group(1)), m.group(2)
    years = {"D": n / 365.25, "W": n / 52.18, "M": n / 12, "Y": n}[unit]
    return "090Y" if years > 89 else v
