"""Reads, before anything is changed, who the instance is about and what identifies them.

The patient identity keys the pseudonym and the date offset; the PHI terms drive the
free-text cleaner and the verifier.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from phiscrub.dicom.text import PhiTerms
from phiscrub.policy import annex_e

# Attributes whose values identify a person or place even inside free text; descriptor
# attributes (those with a Clean Descriptors column) are left out: their words are
# mostly medical and would make the cleaner remove the very content it should keep.
_SKIP_VRS = {"SQ", "OB", "OW", "OF", "OD", "OL", "OV", "UN", "US", "SS", "UL", "SL", "FL",
             "FD", "AT", "UV", "SV", "IS", "DS", "CS", "TM", "UI", "AS"}


def patient_identity(ds: Dataset) -> str:
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        issuer = str(ds.get("IssuerOfPatientID", "") or "").strip()
        return f"id:{issuer}:{pid}"
    name = str(ds.get("PatientName", "") or "").strip().upper()
    if name:
        return f"name:{name}"
    return "unknown"


def _identifying_tags() -> frozenset[int]:
    from phiscrub.policy.actions import Option

    out = set()
    for tag, row in annex_e.exact_rows().items():
        if row.basic == "K" or Option.CLEAN_DESCRIPTORS in row.options:
            continue
        out.add(tag)
    return frozenset(out)


_IDENT = _identifying_tags()


def collect_terms(ds: Dataset, terms: PhiTerms | None = None) -> PhiTerms:
    terms = terms or PhiTerms()
    for elem in ds:
        vr = elem.VR
        if vr == "SQ":
            for item in elem.value or []:
                collect_terms(item, terms)
            continue
        if vr in _SKIP_VRS or elem.tag.is_private:
            continue
        if vr != "PN" and int(elem.tag) not in _IDENT:
            continue
        vals = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
        for v in vals:
            if v in (None, ""):
                continue
            s = str(v)
            if vr == "PN":
                terms.add_name(s)
            elif vr == "DA":
                terms.add_date(s)
            elif vr == "DT":
                terms.add_date(s[:8])
            elif vr in ("LT", "ST", "UT"):
                continue  # long free text is cleaned, not harvested
            else:
                terms.add_literal(s)
    return terms
