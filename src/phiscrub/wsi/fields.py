"""Per-format PHI field lists, loaded from ``policy/data/wsi/<format>.yaml``.

Data, not code: a reviewer reads one file per vendor to see every field and what happens to
it, and a site can audit the list without reading Python.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

import yaml

# date, time, datetime: the field's kind; the policy's options decide (wsi/dates.py).
# device: a serial or machine name, pseudonymized unless retain_device_identity keeps it;
# device_clean: a model or version string, serial-like tokens dropped unless that option.
ACTIONS = ("remove", "pseudonymize", "keep", "clean", "date", "time", "datetime", "device", "device_clean")


@dataclass(frozen=True)
class FieldList:
    format: str
    default: str
    fields: dict[str, str]
    # XML formats only: the elements kept (None: every element not removed by a field rule)
    elements: frozenset[str] | None = None

    def action(self, name: str) -> str:
        return self.fields.get(name, self.default)


@cache
def field_list(fmt: str) -> FieldList:
    text = resources.files("phiscrub.policy.data").joinpath("wsi", f"{fmt}.yaml").read_text()
    doc = yaml.safe_load(text) or {}
    fields = {str(k): str(v) for k, v in (doc.get("fields") or {}).items()}
    default = str(doc.get("default", "remove"))
    for name, act in [*fields.items(), ("default", default)]:
        if act not in ACTIONS:
            raise ValueError(f"wsi/{fmt}.yaml: field {name}: unknown action {act!r}")
    elements = doc.get("elements")
    return FieldList(fmt, default, fields, None if elements is None else frozenset(str(e) for e in elements))


_SERIAL = re.compile(r"\b(?=(?:[A-Za-z-]*\d){4})[A-Za-z0-9-]{6,}\b")
_VERSION = re.compile(r"^v?\d+(\.\d+)+$", re.I)


def clean_serials(text: str) -> str:
    """Software and model strings often carry the scanner's serial number: drop serial-like
    tokens (six or more letters, digits and hyphens, four or more of them digits), keep
    names, model names with fewer digits (SCN400, GT450, AT2) and dotted versions. A model
    number with four digits or more (C13210-01) goes too: by its shape alone it cannot be
    told from a serial, and when in doubt, remove."""
    return _SERIAL.sub(lambda m: m.group(0) if _VERSION.match(m.group(0)) else "", text).strip()


_DATE_FORMATS = [
    ("%Y:%m:%d %H:%M:%S", r"\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}"),
    ("%m/%d/%y", r"\d{2}/\d{2}/\d{2}"),
    ("%m/%d/%Y", r"\d{2}/\d{2}/\d{4}"),
    ("%Y-%m-%d", r"\d{4}-\d{2}-\d{2}"),
    ("%Y/%m/%d", r"\d{4}/\d{2}/\d{2}"),
    ("%Y%m%d", r"\d{8}"),
]


def shift_date_text(text: str, days: int) -> str | None:
    """The date in ``text`` moved by ``days``, written as it was; time and zone of ISO
    date-times kept. None when no known date form is found (the caller then removes)."""
    s = text.strip()
    for fmt, rx in _DATE_FORMATS:
        m = re.match(rx, s)
        if not m:
            continue
        try:
            d = _dt.datetime.strptime(m.group(0), fmt)
        except ValueError:
            continue
        return (d + _dt.timedelta(days=days)).strftime(fmt) + s[m.end():]
    return None
