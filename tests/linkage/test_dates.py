"""Dates and sex codes: raw value → standard value, impossible dates flagged not guessed."""

from datetime import date

import polars as pl
import pytest

from linkage.dates import parse_date, parse_date_column, standardize_sex

AS_OF = date(2026, 11, 23)


@pytest.mark.parametrize(
    ("raw", "expected", "flag"),
    [
        ("1990-01-02", date(1990, 1, 2), None),
        ("1990/1/2", date(1990, 1, 2), None),
        ("19900102", date(1990, 1, 2), None),
        ("1990.01.02", date(1990, 1, 2), None),
        ("1990年1月2日", date(1990, 1, 2), None),
        ("1990年01月02日", date(1990, 1, 2), None),
        ("一九九〇年一月二日", date(1990, 1, 2), None),
        ("32875", date(1990, 1, 2), None),  # Excel serial number
        ("32875.0", date(1990, 1, 2), None),
        ("1990-01-02T00:00:00", date(1990, 1, 2), None),  # ISO datetime
        ("1990-01-02 08:30:00", date(1990, 1, 2), None),
        ("1990-01-02T00:00:00+08:00", date(1990, 1, 2), None),
        ("１９９０－０１－０２", date(1990, 1, 2), None),  # full-width
        ("1990年2月30日", None, "impossible"),
        ("1990-02-30", None, "impossible"),
        ("1990-13-01", None, "impossible"),
        ("1899-12-31", None, "impossible"),  # before 1900
        ("2030-01-01", None, "impossible"),  # future
        ("2026-11-24", None, "impossible"),  # tomorrow
        ("2026-11-23", date(2026, 11, 23), None),
        ("abc", None, "unparseable"),
        ("1990-1", None, "unparseable"),  # not guessed
        ("0", None, "unparseable"),
        ("1990", None, "unparseable"),  # a year alone, not Excel day 1990 (1905-06-12)
        ("43831", date(2020, 1, 1), None),
        ("无", None, None),  # a placeholder is an empty cell
        ("", None, None),
        (None, None, None),
    ],
)
def test_parse_date(raw, expected, flag):
    assert parse_date(raw, AS_OF) == (expected, flag)


def test_column_parse_keeps_order_over_distinct_values():
    raw = pl.Series(["1990-01-02", "32875", None, "1990-02-30", "1990-01-02"])
    out = parse_date_column(raw, AS_OF)
    assert out.get_column("date").to_list() == [date(1990, 1, 2), date(1990, 1, 2), None, None, date(1990, 1, 2)]
    assert out.get_column("flag").to_list() == [None, None, None, "impossible", None]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("男", "M"), ("女", "F"), ("男性", "M"), ("女性", "F"), ("1", "M"), ("2", "F"),
        ("M", "M"), ("f", "F"), ("male", "M"), ("FEMALE", "F"), ("Female", "F"), (" 男 ", "M"), ("Ｍ", "M"),
        ("0", None), ("9", None), ("未知", None), ("", None), (None, None),
    ],
)
def test_sex(raw, expected):
    out = pl.DataFrame({"sex": [raw]}, schema={"sex": pl.String}).select(standardize_sex(pl.col("sex")))
    assert out.item() == expected


def test_column_parser_agrees_with_single_value_parser():
    # The column path (polars) and the one-value path (Python) are two implementations of one rule set.
    raw = [
        "1990-01-02", "1990/1/2", "19900102", "1990.01.02", "1990年1月2日", "一九九〇年一月二日", "一九九〇年二月三十日",
        "32875", "32875.0", "60", "99999", "1990-01-02T00:00:00", "1990-01-02 08:30:00", "1990-01-02T00:00:00+08:00",
        "1990-01-02T00:00:00Z", "１９９０－０１－０２", "1990年2月30日", "1990-13-01", "1899-12-31", "2030-01-01",
        "abc", "1990-1", "0", "1990", "1990.0", "2100", "43831", "无", "", " ", "N/A", None, "2026-11-23", "2026-11-24",
    ]
    out = parse_date_column(pl.Series(raw, dtype=pl.String), AS_OF)
    assert list(zip(out["date"].to_list(), out["flag"].to_list(), strict=True)) == [parse_date(v, AS_OF) for v in raw]


def test_update_timestamps_parse_like_the_single_value_parser():
    # Update times are read by their date part: impossible, future and malformed ones must
    # still come out as parse_date says, and a time that is not HH:MM:SS is parsed as written.
    raw = [
        "2015-10-10 09:25:03", "2015-10-10 23:59:59", "2015-10-10", "2023-02-30 10:00:00", "2026-11-24 00:00:01",
        "1899-12-31 12:00:00", "2015-10-10 9:25:03", "2015-10-10 09:25", "2015-10-10T09:25:03",
        "2015-1-10 09:25:03", "2015-10-10 09:25:03 ", "2015-10-10 09:25:03.5", "2015-10-10 xx:25:03", None,
    ]
    out = parse_date_column(pl.Series(raw, dtype=pl.String), AS_OF)
    assert list(zip(out["date"].to_list(), out["flag"].to_list(), strict=True)) == [parse_date(v, AS_OF) for v in raw]
    assert out["date"][0] == out["date"][1] == date(2015, 10, 10)
    assert out["flag"][3] == "impossible" and out["flag"][4] == "impossible"
