"""One number format for every table: errors to two significant digits, the value to the same
decimal, dashes for what is missing."""

from __future__ import annotations

import math

import pytest

from calo.formatting import DASH, markdown_table, number, with_error


@pytest.mark.parametrize(("value", "error", "text"), [
    (12.00234, 0.00172, "12.0023 ± 0.0017"),
    (1.55, 0.191, "1.55 ± 0.19"),
    (13.8123, 0.0451, "13.812 ± 0.045"),
    (1234.4, 56.0, "1234 ± 56"),
    (0.000321, 0.0000123, "0.000321 ± 0.000012"),
    (4.5, None, "4.5"),
    (4.5, 0.0, "4.5"),
    (None, 0.1, DASH),
    (math.nan, 0.1, DASH),
])
def test_a_value_is_shown_to_the_precision_of_its_error(value, error, text) -> None:
    assert with_error(value, error) == text


def test_numbers_keep_three_significant_digits_and_whole_thousands() -> None:
    assert [number(v) for v in (0.012345, 152.3, 2075.0, None, math.inf)] == [
        "0.0123", "152", "2075", DASH, DASH]


def test_markdown_tables_align_their_columns() -> None:
    table = markdown_table([{"engine": "fp32", "showers/s": 152.3},
                            {"engine": "int8_inc|best", "showers/s": None}])
    assert table.splitlines() == [
        "| engine         | showers/s |",
        "|----------------|-----------|",
        "| fp32           | 152       |",
        "| int8_inc\\|best | —         |",
    ]
