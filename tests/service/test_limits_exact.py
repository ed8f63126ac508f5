"""How the service quotes a client's values back (service/limits.py): exact text at and around every bound."""

from __future__ import annotations

import pytest

from service.limits import MAX_ECHO_CHARS, MAX_ECHOED_NAMES, echo, echo_names, shorten


def test_text_at_the_limit_is_kept_whole_and_one_more_is_cut_saying_how_much():
    assert shorten("a" * 40, 40) == "a" * 40
    cut = shorten("a" * 41, 40)
    assert cut == "a" * 17 + "... (1 more characters)" and len(cut) == 40  # the note counts within the limit


def test_a_limit_shorter_than_the_note_keeps_only_the_note():
    assert shorten("b" * 100, 10) == "... (90 more characters)"


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (7, "7"),
        (2.5, "2.5"),
        (10**50, "1" + "0" * 15 + "... (11 more characters)"),  # 51 digits cut to MAX_ECHO_CHARS
        ("abc", "'abc'"),
        ("x" * 41, repr("x" * 17 + "... (1 more characters)")),
        ([1, 2, 3], "a list of 3"),
        ([], "a list of 0"),
        ({"a": 1, "b": 2}, "an object with 2 key(s)"),
        (b"raw", "bytes"),
    ],
)
def test_each_kind_of_client_value_is_described_exactly(value, said):
    assert echo(value) == said
    assert len(echo(value)) <= MAX_ECHO_CHARS + 2  # quotes around a shortened string


def test_up_to_five_names_are_listed_then_how_many_more():
    assert MAX_ECHOED_NAMES == 5
    assert echo_names([]) == ""
    assert echo_names(["a", "b", "c", "d", "e"]) == "'a', 'b', 'c', 'd', 'e'"
    assert echo_names(["a", "b", "c", "d", "e", "f", "g"]) == "'a', 'b', 'c', 'd', 'e' and 2 more"
    assert echo_names(["n" * 41]) == repr("n" * 17 + "... (1 more characters)")
