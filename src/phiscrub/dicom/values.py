"""Values to put in place of removed ones: dummies by VR, and VR length limits."""

from __future__ import annotations

DUMMY = {
    "PN": "ANONYMOUS",
    "LO": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "UT": "ANONYMIZED",
    "UC": "ANONYMIZED",
    "CS": "ANONYMIZED",
    "AE": "ANONYMOUS",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000Y",
    "IS": "0",
    "DS": "0",
}
MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240, "UC": None}
TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN"})
STRING_VRS = TEXT_VRS | {"AE", "CS", "DA", "DT", "TM", "AS", "UI", "UR", "IS", "DS"}


def fit(value: str, vr: str) -> str:
    limit = MAX_LEN.get(vr)
    return value[:limit] if limit else value
