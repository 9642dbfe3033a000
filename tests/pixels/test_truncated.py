"""A reading that stops inside a known value widens the box by what it missed."""

from __future__ import annotations

from phiscrub.dicom.text import PhiTerms
from phiscrub.pixels.boxes import TextBox
from phiscrub.pixels.phi_match import DEFAULT_THRESHOLD, classify
from phiscrub.pixels.truncated import missing_ends


def test_the_characters_a_reading_stops_short_of() -> None:
    place = ["northgate regional medical ctr"]
    assert missing_ends("Northgate Regional Medica", place) == (0, 5)  # "l Ctr", its space counted
    assert missing_ends("hgate Regional Medical Ctr", place) == (4, 0)
    assert missing_ends("ional Medical Ctr", place) == (0, 0)  # half the value: too little to say
    assert missing_ends("Born 1934-01", ["1934-01-21"]) == (0, 3)
    assert missing_ends("Dr. P. Kowalsk", ["kowalski"]) == (0, 1)


def test_whole_values_and_chance_overlaps_widen_nothing() -> None:
    dates = ["1952-03-14", "19520314", "03/14/1952", "14/03/1952"]
    assert missing_ends("03/14/1952", dates) == (0, 0)  # a whole date; "0314" also starts 1952-03-14's end
    assert missing_ends("Whitfield, Priya", ["whitfield", "priya"]) == (0, 0)
    assert missing_ends("HR 72", ["19520314"]) == (0, 0)
    assert missing_ends("1952", ["19520314"]) == (0, 0)  # half a value: too little to say
    # the same date or time in another written form shares up to two thirds of it
    assert missing_ends("1999-04-28", ["28.4.1999", "04-28-99", "4/28/1999"]) == (0, 0)
    assert missing_ends("19:26", ["19:26:18"]) == (0, 0)
    assert missing_ends("Born 19700626", ["06.26.70", "06/26/70"]) == (0, 0)


def test_a_matched_box_is_widened_by_the_missing_characters() -> None:
    terms = PhiTerms()
    terms.add_literal("Northgate Regional Medical Ctr")
    cut = TextBox(113, 61, 250, 28, "Northgate Regional Medica", 0.99)  # 10 px a character
    whole = TextBox(10, 100, 300, 28, "Northgate Regional Medical Ctr", 0.99)
    got = classify([cut, whole], terms, "sensitive", DEFAULT_THRESHOLD, None, [])
    assert [(b.x, b.w) for b in got] == [(113, 300), (10, 300)]
