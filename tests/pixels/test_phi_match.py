"""Which OCR text counts as PHI: this instance's values read with OCR errors, generic
patterns, user regexes, and the allow-list of device labels."""

from __future__ import annotations

import re

import pytest
from pydicom.dataset import Dataset

from phiscrub.dicom.text import PhiTerms
from phiscrub.pixels.boxes import TextBox
from phiscrub.pixels.phi_match import DEFAULT_THRESHOLD, UNREADABLE, PhiMatcher, classify, terms_from_header


def _header() -> Dataset:
    ds = Dataset()
    ds.PatientName = "DAVIDSON^DOUGLAS^J^^DR"
    ds.PatientID = "MRN4471923"
    ds.OtherPatientIDs = "4471923"
    ds.AccessionNumber = "ACC77123"
    ds.PatientBirthDate = "19520314"
    ds.StudyDate = "20240105"
    ds.StudyTime = "101532.250"
    ds.InstitutionName = "St Mary's General Hospital"
    ds.ReferringPhysicianName = "O'BRIEN^KATHLEEN"
    ds.PerformingPhysicianName = "NG^LI"
    ds.Modality = "US"
    return ds


@pytest.fixture(scope="module")
def matcher() -> PhiMatcher:
    return PhiMatcher(terms_from_header(_header()))


def test_terms_from_header_gathers_names_ids_places_dates_and_times() -> None:
    t = terms_from_header(_header())
    assert {"davidson", "douglas", "o'brien", "kathleen", "ng", "li"} <= t.words
    assert "dr" not in t.words  # honorifics are not identifying
    assert {"mrn4471923", "4471923", "acc77123", "st mary's general hospital"} <= t.literals
    assert {"03/14/1952", "1952-03-14", "14 mar 1952", "01/05/2024", "20240105"} <= t.literals
    assert {"10:15:32", "10:15"} <= t.literals


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("DAVIDSON^DOUGLAS", "phi-name"),
        ("DAVIDSONDOUGLAS", "phi-name"),  # the caret is never read
        ("DAVIDSON'DOUGLAS", "phi-name"),
        ("DAVIDSQN", "phi-name"),  # one letter misread
        ("Douglas", "phi-name"),
        ("O'BRIEN", "phi-name"),
        ("OBRIEN K", "phi-name"),
        ("NG", "phi-name"),  # short name parts match as whole words
        ("MRN4471923", "phi-id"),
        ("MRN 447I923", "phi-id"),  # I for 1, space inserted
        ("ID: 4471923", "phi-id"),
        ("Acc# ACC77123", "phi-id"),
        ("03/14/1952", "phi-date"),
        ("O3/14/1952", "phi-date"),  # O for 0
        ("3/14/52", "phi-date"),
        ("14-Mar-1952", "phi-date"),
        ("March 14, 1952", "phi-date"),
        ("DOB 1952.03.14", "phi-date"),
        ("10:15:32", "phi-date"),
        ("ST MARYS GENERAL HOSPITAL", "phi-name"),
        ("11:42:07 PM", "pattern"),  # another time
        ("1/30/2020", "pattern"),  # another date
        ("123456789", "pattern"),  # long digit run
        ("john.doe@example.org", "pattern"),
    ],
)
def test_phi_is_found(matcher: PhiMatcher, text: str, reason: str) -> None:
    assert matcher.reason(text) == reason


@pytest.mark.parametrize(
    "text",
    ["L", "R", "AP", "LAT", "5.0 MHz", "5.0MHz", "10 cm", "HR 72", "12/30", "Fr 12/30", "Im: 3/45", "Gain 50%", "DR 60",
     "TIS 0.4 MI 1.1", "Dyn R 58", "2D", "CT CHEST", "DAVID", "", "  "],
)
def test_labels_and_other_text_are_kept(matcher: PhiMatcher, text: str) -> None:
    assert matcher.reason(text) is None


def test_threshold_one_means_exact() -> None:
    strict = PhiMatcher(terms_from_header(_header()), threshold=1.0)
    assert strict.reason("DAVIDSON") == "phi-name"
    assert strict.reason("DAVIDSQN") is None
    assert strict.reason("MRN4471923") == "phi-id"
    assert 0 < DEFAULT_THRESHOLD < 1


def test_fuzzy_needs_most_of_the_name() -> None:
    m = PhiMatcher(terms_from_header(_header()), threshold=0.8)
    assert m.reason("DAVIDS") is None  # 6 of 8 letters: a fragment, not the name
    assert m.reason("DAVIDSO") == "phi-name"


def _boxes(*texts: str) -> list[TextBox]:
    return [TextBox(10 * i, 5, 8, 8, t, 0.9) for i, t in enumerate(texts)]


def test_classify_modes() -> None:
    terms = terms_from_header(_header())
    boxes = _boxes("DAVIDSONDOUGLAS", "L", "5.0 MHz", "03/14/1952", "HR 72", "MRN4471923")
    assert classify(boxes, terms, "none", DEFAULT_THRESHOLD, [], []) == []
    every = classify(boxes, terms, "all", DEFAULT_THRESHOLD, [], [])
    assert [(b.x, b.reason, b.frame) for b in every] == [(10 * i, "all-text", None) for i in range(6)]
    sens = classify(boxes, terms, "sensitive", DEFAULT_THRESHOLD, None, [])
    assert [(b.x, b.reason) for b in sens] == [(0, "phi-name"), (30, "phi-date"), (50, "phi-id")]
    with pytest.raises(ValueError):
        classify(boxes, terms, "auto", DEFAULT_THRESHOLD, [], [])


def test_a_box_read_as_strips_blanks_only_the_strips_that_match() -> None:
    """A detector box over three stacked lines (or over a name on colour Doppler) is read
    as strips: only the strip holding the name goes, not the whole box."""
    terms = terms_from_header(_header())
    lines = (TextBox(0, 0, 200, 30, "5.0 MHz", 0.9), TextBox(0, 24, 200, 30, "DAVIDSON DOUGLAS", 0.9),
             TextBox(0, 48, 200, 30, "", 0.0))
    tall = TextBox(0, 0, 200, 78, "5.0 MHz DAVIDSON DOUGLAS", 0.9, lines)
    got = classify([tall], terms, "sensitive", DEFAULT_THRESHOLD, None, [])
    assert [(b.y, b.h, b.reason) for b in got] == [(24, 30, "phi-name")]
    # a value only the joined reading shows (split over two strips): the whole box goes
    split = TextBox(0, 0, 200, 54, "MRN 4471923", 0.9, (TextBox(0, 0, 200, 30, "MRN", 0.9), TextBox(0, 24, 200, 30, "4471", 0.9)))
    assert [(b.y, b.h) for b in classify([split], terms, "sensitive", DEFAULT_THRESHOLD, None, [])] == [(0, 54)]
    # 'all' mode blanks the box whole
    assert [(b.y, b.h) for b in classify([tall], terms, "all", DEFAULT_THRESHOLD, None, [])] == [(0, 78)]


def test_sensitive_fails_closed_on_text_it_cannot_read() -> None:
    """Issue 16 step 4: a reading below the confidence floor cannot show the text is
    harmless, so it goes as 'unreadable'; confident harmless text stays; 0 turns it off."""
    terms = terms_from_header(_header())
    boxes = [TextBox(0, 5, 8, 8, "5.0 MHz", 0.95), TextBox(10, 5, 8, 8, "5.0 MHz", 0.31),
             TextBox(20, 5, 8, 8, "DAVIDS0N", 0.2), TextBox(30, 5, 8, 8, "xq7", 0.3),
             TextBox(40, 5, 8, 8, "", 0.0), TextBox(50, 5, 8, 8, "C", 0.2)]  # no reading, one stray letter: not text
    got = classify(boxes, terms, "sensitive", DEFAULT_THRESHOLD, None, [], unreadable_below=0.5)
    assert [(b.x, b.reason) for b in got] == [(10, UNREADABLE), (20, "phi-name"), (30, UNREADABLE)]
    assert [(b.x, b.reason) for b in classify(boxes, terms, "sensitive", DEFAULT_THRESHOLD, None, [])] == [(20, "phi-name")]
    # strips: the doubtful harmless strip goes beside the name, the confident one stays
    lines = (TextBox(0, 0, 200, 30, "5.0 MHz", 0.9), TextBox(0, 24, 200, 30, "DAVIDSON DOUGLAS", 0.9),
             TextBox(0, 48, 200, 30, "qz", 0.1))
    tall = TextBox(0, 0, 200, 78, "5.0 MHz DAVIDSON DOUGLAS qz", 0.1, lines)
    got = classify([tall], terms, "sensitive", DEFAULT_THRESHOLD, None, [], unreadable_below=0.5)
    assert [(b.y, b.reason) for b in got] == [(24, "phi-name"), (48, UNREADABLE)]
    harmless = TextBox(0, 0, 200, 54, "5.0 MHz qz", 0.1, (lines[0], lines[2]))
    got = classify([harmless], terms, "sensitive", DEFAULT_THRESHOLD, None, [], unreadable_below=0.5)
    assert [(b.y, b.reason) for b in got] == [(48, UNREADABLE)]
    # 'all' blanks everything anyway, under its own reason
    assert {b.reason for b in classify(boxes, terms, "all", DEFAULT_THRESHOLD, None, [], unreadable_below=0.5)} == {"all-text"}


def test_sensitive_without_terms_falls_back_to_all() -> None:
    boxes = _boxes("anything", "L")
    assert {b.reason for b in classify(boxes, PhiTerms(), "sensitive", 0.8, [], [])} == {"all-text"}
    assert len(classify(boxes, None, "sensitive", 0.8, [], [])) == 2


def test_user_patterns_and_allow_list() -> None:
    terms = terms_from_header(_header())
    boxes = _boxes("Bay 7 Echo Lab", "HR 72", "Probe C5-1")
    pats = [re.compile(r"echo\s+lab", re.IGNORECASE)]
    assert [(b.x, b.reason) for b in classify(boxes, terms, "sensitive", 0.8, ["HR"], pats)] == [(0, "user-pattern")]
    # a short name part that is also a device label: the allow-list decides
    t = PhiTerms()
    t.add_name("LI^MI")
    assert classify(_boxes("MI 1.2"), t, "sensitive", 0.8, ["mi"], []) == []
    assert [b.reason for b in classify(_boxes("MI 1.2"), t, "sensitive", 0.8, [], [])] == ["phi-name"]
    # a name part of four letters or more wins over the allow-list: it may be the surname alone
    t.add_name("POWER^JOHN")
    assert [b.reason for b in classify(_boxes("POWER"), t, "sensitive", 0.8, ["power"], [])] == ["phi-name"]


def test_config_allow_list_is_understood() -> None:
    """A user's allow list from the pixels config is honoured, and the built-in list is the default."""
    from phiscrub.policy.pixels_config import parse_pixels

    terms = terms_from_header(_header())
    boxes = _boxes("5.0 MHz", "HR 72", "10 cm", "Gain 60", "DAVIDSON")
    default = parse_pixels({}).allow or None
    assert [b.reason for b in classify(boxes, terms, "sensitive", 0.8, default, [])] == ["phi-name"]
    custom = list(parse_pixels({"allow": ["MHz", "HR", "cm", "Gain"]}).allow)
    assert [b.reason for b in classify(boxes, terms, "sensitive", 0.8, custom, [])] == ["phi-name"]


def test_unreadable_below_is_validated_and_changes_the_policy_hash() -> None:
    from phiscrub.errors import ConfigError
    from phiscrub.policy.pixels_config import parse_pixels

    assert parse_pixels({}).unreadable_below == 0.5
    assert parse_pixels({"unreadable_below": 0}).unreadable_below == 0.0
    for bad in (-0.1, 1.5, "often"):
        with pytest.raises(ConfigError, match="unreadable_below"):
            parse_pixels({"unreadable_below": bad})
    assert parse_pixels({}).describe() != parse_pixels({"unreadable_below": 0}).describe()


@pytest.mark.parametrize(("text", "reason"), [
    ("Age: 76", "phi-age"), ("AGE:76", "phi-age"), ("age76", "phi-age"), ("76 y", "phi-age"), ("76yo F", "phi-age"),
    ("76 years old", "phi-age"), ("Age 076Y", "phi-id"),  # the AS value itself, as a literal
    ("HR 76", None), ("76 bpm", None), ("Age: 77", None), ("7.6 y", None), ("Age: 76M", None), ("76 mm", None),
    ("1976", None), ("Page 76", None),
])
def test_the_patients_age_is_matched_beside_its_caption_or_unit_only(text: str, reason: str | None) -> None:
    """JSL burns "Age: 76" (PatientAge 076Y, which Annex E removes from the header): the
    number alone is everywhere (a heart rate, a frame), so it counts only as an age."""
    ds = Dataset()
    ds.PatientName = "DOE^JANE"
    ds.PatientAge = "076Y"
    assert PhiMatcher(terms_from_header(ds)).reason(text) == reason
    del ds.PatientAge
    assert PhiMatcher(terms_from_header(ds)).reason(text) != "phi-age"  # no age in the header, none matched
