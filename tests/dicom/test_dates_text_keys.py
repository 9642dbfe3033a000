"""Date shifting, age generalisation, free-text PHI and keyed derivations."""

from __future__ import annotations

import pytest

from phiscrub.dicom.dates import generalise_age, shift_da, shift_dt
from phiscrub.dicom.text import PhiTerms, clean_text, date_variants
from phiscrub.keys import KeyRing


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [("20210304", -10, "20210222"), ("20200301", -1, "20200229"), ("2021.03.04", 1, "20210305"),
     ("202103", -40, "202101"), ("", 5, ""), ("notadate", 3, None),
     ("20210101-20210131", -1, "20201231-20210130")],
)
def test_shift_da(value: str, days: int, expected) -> None:
    assert shift_da(value, days) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("20210304101500.123456+0100", "20210224101500.123456+0100"), ("20210304", "20210224"),
     ("20210304235959-0500", "20210224235959-0500")],
)
def test_shift_dt_keeps_time_and_zone(value: str, expected: str) -> None:
    assert shift_dt(value, -8) == expected


@pytest.mark.parametrize(("age", "out"), [("089Y", "089Y"), ("090Y", "090Y"), ("095Y", "090Y"),
                                          ("1100M", "1100M"), ("999M", "999M"), ("1200W", "1200W"),
                                          ("012D", "012D"), ("0950M", "0950M")])
def test_generalise_age(age: str, out: str) -> None:
    assert generalise_age(age) == out


def test_ages_in_months_and_weeks_over_89_years() -> None:
    assert generalise_age("999W") == "999W"  # 19 years
    assert generalise_age("200Y") == "090Y"


def test_clean_text_removes_identity_keeps_medicine() -> None:
    t = PhiTerms()
    t.add_name("Davidson^Douglas^Edward")
    t.add_literal("MRN4471923")
    t.add_literal("42 Wallaby Way, Sydney")
    t.add_date("19520314")
    text = ("Douglas DAVIDSON (MRN4471923) born 14 March 1952, lives 42 Wallaby Way. "
            "Davidsen reports chest pain; CT thorax with contrast, 5 mm slices. "
            "Call 555-867-5309 or doug@example.org. Seen 2021-03-04.")
    out, n = clean_text(text, t, "[X]")
    for phi in ("Douglas", "DAVIDSON", "Davidsen", "4471923", "1952", "Wallaby", "867", "doug@", "2021-03-04"):
        assert phi not in out, phi
    for keep in ("chest pain", "CT thorax with contrast", "5 mm slices"):
        assert keep in out
    assert n >= 8


def test_date_variants_cover_common_forms() -> None:
    v = date_variants("19520314")
    assert {"03/14/1952", "14/03/1952", "1952-03-14", "14 march 1952", "mar 14, 1952", "14.03.1952"} <= v


def test_keyring_is_deterministic_and_keyed() -> None:
    a, b = KeyRing(b"a" * 20), KeyRing(b"b" * 20)
    assert a.uid("1.2.3") == a.uid("1.2.3") != b.uid("1.2.3")
    assert a.uid("1.2.3").startswith("2.25.") and len(a.uid("1.2.3")) <= 64
    assert a.patient_id("x") == a.patient_id("x") != a.patient_id("y")
    offs = {a.date_offset(f"p{i}", -30, -1) for i in range(200)}
    assert offs <= set(range(-30, 0)) and len(offs) > 20
