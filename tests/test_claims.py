"""Sentence splitting and fact extraction for claims (ragline.answer.claims)."""

from __future__ import annotations

from ragline.answer.claims import (
    canonical_number,
    extract_dates,
    extract_names,
    extract_numbers,
    initialisms,
    name_in,
    normalize,
    parse_markers,
    split_sentences,
    strip_markers,
)


def texts(text: str) -> list[str]:
    return [s.text for s in split_sentences(text)]


def test_split_keeps_decimals_inside_a_sentence() -> None:
    assert texts("The rate rose to 3.5 percent. It then fell.") == [
        "The rate rose to 3.5 percent.",
        "It then fell.",
    ]


def test_split_ignores_common_abbreviations_and_initials() -> None:
    text = "Dr. Smith met J. K. Rowling, e.g. in London. They talked."
    assert texts(text) == ["Dr. Smith met J. K. Rowling, e.g. in London.", "They talked."]


def test_split_keeps_dotted_acronyms_inside_a_sentence() -> None:
    assert texts("It was formed by S.M. Entertainment in 2008. Then more.") == [
        "It was formed by S.M. Entertainment in 2008.",
        "Then more.",
    ]


def test_split_attaches_markers_to_the_sentence_they_follow() -> None:
    sentences = split_sentences("Paris is in France [1]. It is big.[2][3] It rains [4-5]")
    assert [s.text for s in sentences] == ["Paris is in France.", "It is big.", "It rains"]
    assert [s.citations for s in sentences] == [(1,), (2, 3), (4, 5)]


def test_split_offsets_point_at_the_raw_span() -> None:
    text = "  First one.   Second one [2].\n\nThird."
    for sentence in split_sentences(text):
        raw = text[sentence.start : sentence.end]
        assert strip_markers(raw) == sentence.text


def test_split_breaks_at_blank_lines_without_punctuation() -> None:
    assert texts("A heading\n\nBody text here.") == ["A heading", "Body text here."]


def test_split_question_and_exclamation_marks() -> None:
    assert texts("Is it true? Yes! It is.") == ["Is it true?", "Yes!", "It is."]


def test_split_empty_text_gives_no_sentences() -> None:
    assert split_sentences("   ") == []


def test_parse_markers_handles_lists_and_ranges() -> None:
    assert parse_markers("x [1, 3] y [2-4] z [3]") == (1, 3, 2, 4)


def test_strip_markers_tidies_spaces_before_punctuation() -> None:
    assert strip_markers("Paris is big [1] [2].") == "Paris is big."


def test_numbers_with_separators_decimals_and_percentages() -> None:
    values = [m.value for m in extract_numbers("It cost 1,200.50 dollars, up 12 % from 3.0.")]
    assert values == ["1200.5", "12%", "3"]


def test_number_words_are_numbers() -> None:
    assert [m.value for m in extract_numbers("She had twelve siblings and one dog.")] == ["12"]


def test_canonical_number_normalises_forms() -> None:
    assert canonical_number("1,000") == "1000"
    assert canonical_number("2.50") == "2.5"
    assert canonical_number("15 per cent") == "15%"


def test_dates_in_several_formats() -> None:
    text = "Born March 3, 2021, moved 2022-01-09, left 4 July 1990, back in May 1995 and in 1998."
    assert [d.value for d in extract_dates(text)] == [
        "2021-03-03",
        "2022-01-09",
        "1990-07-04",
        "1995-05",
        "1998",
    ]


def test_numbers_can_skip_date_spans() -> None:
    text = "On March 3, 2021 it sold 40 units."
    spans = tuple((d.start, d.end) for d in extract_dates(text))
    assert [m.value for m in extract_numbers(text, skip=spans)] == ["40"]


def test_names_are_capitalised_runs_with_connectives() -> None:
    text = "Shirley Temple served the United States of America and the University of Oxford."
    assert [m.raw for m in extract_names(text)] == [
        "Shirley Temple",
        "United States of America",
        "University of Oxford",
    ]


def test_sentence_initial_common_word_is_not_a_name() -> None:
    assert [m.raw for m in extract_names("The film starred Tom Hanks.")] == ["Tom Hanks"]


def test_names_ignore_months_and_mid_word_capitals() -> None:
    assert [m.raw for m in extract_names("In March it hit iTunes and 3ABN with Apple.")] == [
        "Apple"
    ]


def test_normalize_casefolds_strips_accents_and_punctuation() -> None:
    assert normalize("Pokémon:  THE „Film“!") == "pokemon the film"


def test_name_in_accepts_acronym_of_source_words() -> None:
    words = normalize("the National Collegiate Athletic Association rules").split()
    assert name_in("ncaa", frozenset(words), initialisms(words))
    assert not name_in("nba", frozenset(words), initialisms(words))
