"""The free-text cleaner with a study's merged terms: names in every order and spelling, dates
in written forms, identifier-shaped tokens, the measurement keep-list, and pickling."""

from __future__ import annotations

import pickle

import pytest
from pydicom.dataset import Dataset

from phiscrub.dicom.identity import collect_terms
from phiscrub.dicom.text import PhiTerms, clean_text, keep_tokens

M = "[X]"


def _instance(name: str, physician: str, relative: str | None = None) -> Dataset:
    ds = Dataset()
    ds.PatientName = name
    ds.PatientID = "MRN4471923"
    ds.AccessionNumber = "ACC77123"
    ds.StudyDate = "20230415"
    ds.ReferringPhysicianName = physician
    ds.InstitutionName = "St Mary's General Hospital"
    if relative:
        ds.ResponsiblePerson = relative
    return ds


def _terms(*names: str, literals: tuple[str, ...] = (), dates: tuple[str, ...] = ()) -> PhiTerms:
    t = PhiTerms()
    for n in names:
        t.add_name(n)
    for v in literals:
        t.add_literal(v)
    for d in dates:
        t.add_date(d)
    return t


# ---------------------------------------------------------------------- study terms


def test_sibling_physician_and_relative_are_cleaned_with_the_merged_terms() -> None:
    own = collect_terms(_instance("Davidson^Douglas", "Okafor^Chidi"))
    sibling = collect_terms(_instance("Davidson^Douglas", "Nakamura^Hiroshi", relative="Quigley^Marguerite"))
    text = "Discussed with Dr Nakamura and daughter Marguerite Quigley; chest pain."

    with_own, n_own = clean_text(text, own, M)
    assert "Nakamura" in with_own and "Quigley" in with_own and n_own == 0  # why the merge matters

    merged = own.merge(sibling)
    out, n = clean_text(text, merged, M)
    assert out == f"Discussed with Dr {M} and daughter {M} {M}; chest pain."
    assert n == 3
    assert clean_text(text, PhiTerms.combine([own, None, sibling]), M) == (out, n)


def test_merge_is_a_union_that_changes_neither_input() -> None:
    a, b = _terms("Davidson^Douglas"), _terms("Quigley^Marguerite", literals=("ACC77123",))
    before_a, before_b = a.canonical(), b.canonical()
    m = a.merge(b)
    assert a.canonical() == before_a and b.canonical() == before_b
    assert m.words == a.words | b.words and m.literals == a.literals | b.literals
    assert m.names == a.names | b.names
    assert (a | b) == m == PhiTerms.combine([a, b])
    c = PhiTerms()
    c.update(a)
    c.update(b)
    assert c == m


def test_canonical_is_order_independent_and_changes_with_a_new_value() -> None:
    a, b = _terms("Davidson^Douglas", dates=("20230415",)), _terms("Quigley^Marguerite")
    assert a.merge(b).canonical() == b.merge(a).canonical()
    assert list(a.merge(b).canonical()) == sorted(a.merge(b).canonical())
    grown = a.merge(b)
    grown.add_literal("ACC77123")
    assert grown.canonical() != a.merge(b).canonical()


def test_pickling_round_trip_keeps_values_and_matching() -> None:
    t = _terms("Davidson^Douglas^Edward", "Müller^José", literals=("MRN4471923",), dates=("20230415",))
    text = "Douglas DAVIDSON, José Mueller, MRN4471923, seen 15 Apr 2023."
    before = clean_text(text, t, M)  # compiles and caches the matcher on the object
    data = pickle.dumps(t)
    assert b"_cache" not in data  # the compiled matcher is not sent to workers
    back = pickle.loads(data)
    assert back == t and back.canonical() == t.canonical()
    assert clean_text(text, back, M) == before
    back.add_name("Zebedee")  # the unpickled copy still notices changes
    assert "Zebedee" not in clean_text("Zebedee came", back, M)[0]


def test_a_change_after_use_is_seen() -> None:
    t = _terms("Davidson^Douglas")
    assert clean_text("Zebedee came", t, M) == ("Zebedee came", 0)
    t.words |= {"zebedee"}  # as the annotation cleaner adds terms
    assert clean_text("Zebedee came", t, M) == (f"{M} came", 1)
    t.literals.add("quux-77")
    assert clean_text("ref QUUX 77", t, M) == (f"ref {M}", 1)
    t.words -= {"zebedee"}
    assert clean_text("Zebedee came", t, M) == ("Zebedee came", 0)


def test_repr_holds_counts_not_values() -> None:
    assert "davidson" not in repr(_terms("Davidson^Douglas")).lower()


# ---------------------------------------------------------------------- names

NAMES = _terms("Davidson^Douglas^Edward", "Müller^José", "O'Brien^Kathleen", "Smith-Jones^Ann")


@pytest.mark.parametrize(
    ("text", "left"),
    [
        ("Davidson^Douglas", "^"),
        ("Davidson^Douglas^Edward", "^^"),
        ("Douglas Davidson", " "),
        ("Douglas Edward DAVIDSON", "  "),
        ("davidson, douglas", ", "),
        ("DAVIDSON, Douglas E.", ", "),
        ("D. Davidson", ""),
        ("D. E. Davidson", ""),
        ("D Davidson", ""),
        ("Davidson, D.E.", ""),
        ("Davidson DE", " DE"),  # two capitals together are not read as initials
        ("Davidsen", ""),  # one typo
        ("José Müller", " "),
        ("Jose Muller", " "),
        ("JOSE MUELLER", " "),
        ("Kathleen O’Brien", ""),  # O is also read as an initial beside Kathleen
        ("OBrien", ""),
        ("O Brien", ""),
        ("Ann Smith-Jones", " "),
        ("Ann Smith Jones", " "),  # "Smith Jones" is one value
        ("Jones", ""),
    ],
)
def test_names_in_every_order_and_spelling(text: str, left: str) -> None:
    out, n = clean_text(text, NAMES, M)
    assert out.replace(M, "") == left, out
    assert n >= 1


def test_initials_only_beside_a_name_and_only_known_ones() -> None:
    out, _ = clean_text("Seen by Q. Davidson; I agree.", NAMES, M)
    assert out == f"Seen by Q. {M}; I agree."  # no known name part starts with Q
    assert clean_text("Seen by E. Davidson; I agree.", NAMES, M)[0] == f"Seen by {M}; I agree."


def test_common_words_of_places_stay_but_the_place_goes() -> None:
    t = _terms(literals=("St Mary's General Hospital", "White", "Department of Radiology"))
    out, _ = clean_text("General anaesthesia, white matter; at St. Mary's General Hospital.", t, M)
    assert out == f"General anaesthesia, white matter; at {M}."
    assert clean_text("Department of Radiology", t, M) == ("Department of Radiology", 0)
    named = t.merge(_terms("White^Barry^^Dr"))  # a patient named White is identified by it
    out, _ = clean_text("Dr Barry White", named, M)
    assert out == f"Dr {M} {M}"


@pytest.mark.parametrize("text", ["MRN4471923", "MRN 4471923", "mrn-4471923", "4471923", "ACC77123",
                                  "acc 77123"])
def test_ids_and_accession_numbers(text: str) -> None:
    t = _terms(literals=("MRN4471923", "ACC77123"))
    assert clean_text(f"ref {text} done", t, M) == (f"ref {M} done", 1)


def test_institution_and_physician_from_the_header() -> None:
    t = collect_terms(_instance("Davidson^Douglas", "Okafor^Chidi"))
    out, _ = clean_text("Referred by Dr. C. Okafor to St Mary's General Hospital", t, M)
    assert out == f"Referred by Dr. {M} to {M}"


def test_dates_and_addresses_the_table_does_not_list_are_collected() -> None:
    ds = _instance("Davidson^Douglas", "Okafor^Chidi")
    ds.InstanceCreationDate = "20230417"  # not in PS3.15 Table E.1-1
    ds.InstitutionAddress = "42 Wallaby Way, Sydney"  # ST
    t = collect_terms(ds)
    out, _ = clean_text("Created 17 April 2023 at 42 Wallaby Way", t, M)
    assert out == f"Created {M} at {M}"


# ---------------------------------------------------------------------- dates

DATE_FORMS = [
    "20230415", "2023-04-15", "2023/04/15", "2023.04.15", "15/04/2023", "04/15/2023", "15.04.2023",
    "15-04-2023", "4/15/23", "15.4.23", "April 15, 2023", "April 15 2023", "Apr 15, 2023", "Apr. 15th, 2023",
    "15 Apr 2023", "15 April 2023", "15th April 2023", "15-Apr-2023", "15APR2023", "15 apr 23",
    "2023 Apr 15", "2023-Apr-15",
]


@pytest.mark.parametrize("form", DATE_FORMS)
def test_known_date_in_written_forms(form: str) -> None:
    t = _terms("Davidson^Douglas", dates=("20230415",))
    assert clean_text(f"Seen on {form} for review.", t, M) == (f"Seen on {M} for review.", 1)


@pytest.mark.parametrize("form", DATE_FORMS)
def test_a_date_of_no_header_goes_too(form: str) -> None:
    assert clean_text(f"Seen on {form} for review.", PhiTerms(), M) == (f"Seen on {M} for review.", 1)


# ---------------------------------------------------------------------- identifier shapes


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("Probe SN4A7731 checked", f"Probe {M} checked"),
        ("sn4a7731", M),
        ("MRN00123X", M),
        ("req REQ-88A123 sent", f"req {M} sent"),  # hyphens join: the whole code goes
        ("4A-77-31B", M),
        ("SN-4471923", M),
        ("ABC123456 and X7Y8Z9Q1", f"{M} and {M}"),
        ("PAT_00123X", f"PAT_{M}"),  # underscores separate
        ("Scanner 1234ABCD.", f"Scanner {M}."),
    ],
)
def test_identifier_shaped_tokens_are_removed_and_counted(text: str, out: str) -> None:
    got, n = clean_text(text, PhiTerms(), M)
    assert got == out
    assert n == out.count(M)


@pytest.mark.parametrize("token", ["AB12C", "T1-weighted", "CA-125", "HbA1c", "COVID-19", "L4-L5", "ep2d_diff"])
def test_short_or_few_digit_tokens_stay(token: str) -> None:
    assert clean_text(f"x {token} y", PhiTerms(), M) == (f"x {token} y", 0)


BRIEF_KEEP = ["120kVp", "512x512", "5.0MHz", "T2W", "3.0T", "2.5mm", "100mAs", "1.5T", "T1W_SE",
              "DWI_b1000", "0.5mmx0.5mm"]


def test_the_keep_list_lists_the_measurements_of_the_brief() -> None:
    assert set(BRIEF_KEEP) <= set(keep_tokens()[1])


@pytest.mark.parametrize("token", keep_tokens()[1])
def test_every_listed_measurement_stays(token: str) -> None:
    text = f"Axial {token} protocol"
    terms = _terms("Davidson^Douglas", literals=("MRN4471923",), dates=("20230415",))
    assert clean_text(text, terms, M) == (text, 0)


def test_measurements_stay_beside_identifiers() -> None:
    text = "CT 120kVp 100mAs 512x512, probe SN4A7731, T2W 3.0T"
    assert clean_text(text, PhiTerms(), M) == (f"CT 120kVp 100mAs 512x512, probe {M}, T2W 3.0T", 1)


def test_extra_patterns_still_apply() -> None:
    import re

    out, n = clean_text("Case FOO-1 and bar", PhiTerms(), M, [re.compile(r"FOO-\d")])
    assert (out, n) == (f"Case {M} and bar", 1)
