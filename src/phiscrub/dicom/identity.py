"""Reads, before anything is changed, who the instance is about and what identifies them.

The patient identity keys the pseudonym and the date offset; the PHI terms drive the
free-text cleaner and the verifier.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from phiscrub.dicom.text import PhiTerms
from phiscrub.dicom.un_vr import dictionary_vr
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


def _harvests_long_text(keyword: str) -> bool:
    """Telecom values are LT but hold a phone or an address, not prose."""
    return keyword.endswith("TelecomInformation")


def _harvested(vr: str, tag: int) -> bool:
    """Whether an element of this VR and tag is read for terms (a sequence: for its items)."""
    if vr == "SQ":
        return True
    return vr not in _SKIP_VRS and (vr in ("PN", "DA", "DT") or tag in _IDENT)


def collect_terms(ds: Dataset, terms: PhiTerms | None = None) -> PhiTerms:
    """The identifying values of ``ds`` (sequences included) for the free-text cleaner.

    Every PN, DA and DT value is taken, listed in PS3.15 Table E.1-1 or not: a date the
    table does not name (Instance Creation Date, an SR content date) is a date of service
    all the same, and text repeats it. ST values of identifying attributes (addresses) and
    telecom LT values are taken whole; other LT/UT values are prose, cleaned, not harvested.
    """
    terms = PhiTerms() if terms is None else terms
    elems = ds._dict
    for btag, raw in list(elems.items()):
        tag = int(btag)
        if (tag >> 16) & 1:
            continue  # private: cleaned or removed by the policy, not harvested
        # the VR from the raw element where it has one, so that nothing is decoded that is
        # not harvested (decoding every element cost more than the whole transform)
        vr = raw.VR
        if vr is None or vr == "UN":
            vr = dictionary_vr(tag) or vr
        if vr is None or not _harvested(vr, tag):
            continue
        elem = ds[btag]  # decodes this element only; its decoded VR decides again
        vr = elem.VR
        if not _harvested(vr, tag):
            continue
        if vr == "SQ":
            for item in elem.value or []:
                collect_terms(item, terms)
            continue
        vals = elem.value if isinstance(elem.value, (list, MultiValue)) else [elem.value]
        for v in vals:
            if v in (None, ""):
                continue
            s = str(v)
            if vr == "PN":
                terms.add_name(s)
            elif vr == "DA":
                for part in s.split("-"):  # a range query value: 20210101-20210131
                    terms.add_date(part)
            elif vr == "DT":
                for part in s.split("-"):  # a range, or a -hhmm offset (too short to be a date)
                    if len(part) >= 8:
                        terms.add_date(part[:8])
            elif vr in ("LT", "UT") and not _harvests_long_text(elem.keyword or ""):
                continue  # long free text is cleaned, not harvested
            else:
                terms.add_literal(s)
    return terms
