"""Dates as departments write them, and sex codes.

Date parsing runs in Python, but only over the DISTINCT raw strings of a column
(a city has a few tens of thousands of distinct birth dates against millions of
rows), and the result is joined back. Impossible dates are flagged, never guessed.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta

import polars as pl

from linkage.id_numbers import nfkc

EARLIEST = date(1900, 1, 1)
# Excel's day 0 is 1899-12-30 once its phantom 1900-02-29 is accounted for (serials >= 61).
_EXCEL_EPOCH = date(1899, 12, 30)
# Serials outside this window are not dates anyone in a population register has (1900..2100).
_EXCEL_MIN, _EXCEL_MAX = 61, 73415
# A bare 1900..2100 is a year someone typed, not Excel's serial for a day in 1905: not guessed.
_YEAR_MIN, _YEAR_MAX = 1900, 2100

_YMD = re.compile(
    r"^(?P<y>\d{4})\s*[-/.年]\s*(?P<m>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?"
    r"(?:(?:[T\s]+\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
# 2024-05-01 12:34:56: an `_YMD` match whose date is its first 10 characters.
_ISO_TIMESTAMP = r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$"
_COMPACT = re.compile(r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$")
_SERIAL = re.compile(r"^(?P<n>\d{1,5})(?:\.\d+)?$")

# What clerks type into a date cell they have nothing for: empty, not a bad date.
PLACEHOLDERS = frozenset({"无", "不详", "未知", "空", "暂无", "-", "--", "/", "NULL", "NONE", "N/A", "NA", "NAN", "NAT"})

_HAN_DIGITS = {"〇": "0", "零": "0", "○": "0", "Ｏ": "0", "一": "1", "二": "2", "三": "3", "四": "4",
               "五": "5", "六": "6", "七": "7", "八": "8", "九": "9"}
_HAN_DATE = re.compile(r"^(?P<y>[〇零○一二三四五六七八九]{4})年(?P<m>[一二三四五六七八九十]{1,2})月(?P<d>[一二三四五六七八九十]{1,3})日?$")


def _han_small_number(text: str) -> int:
    # 一 .. 三十一 as written in dates
    if "十" not in text:
        return int(_HAN_DIGITS[text])
    tens, _, units = text.partition("十")
    return (int(_HAN_DIGITS[tens]) if tens else 1) * 10 + (int(_HAN_DIGITS[units]) if units else 0)


def parse_date(raw: str | None, as_of: date) -> tuple[date | None, str | None]:
    """Parse one raw date string. Returns (date, flag) with flag None, 'unparseable' or 'impossible'.

    'impossible' covers a calendar date that does not exist (2月30日), one before 1900
    and one after `as_of`.
    """
    if raw is None:
        return None, None
    text = unicodedata.normalize("NFKC", raw).strip()
    if not text or text.upper() in PLACEHOLDERS:
        return None, None
    parts: tuple[int, int, int] | None = None
    if m := _YMD.match(text) or _COMPACT.match(text):
        parts = int(m["y"]), int(m["m"]), int(m["d"])
    elif m := _HAN_DATE.match(text):
        parts = int("".join(_HAN_DIGITS[c] for c in m["y"])), _han_small_number(m["m"]), _han_small_number(m["d"])
    elif m := _SERIAL.match(text):
        n = int(m["n"])
        if not _EXCEL_MIN <= n <= _EXCEL_MAX or (_YEAR_MIN <= n <= _YEAR_MAX and "." not in text):
            return None, "unparseable"
        value = _EXCEL_EPOCH + timedelta(days=n)
        return _check_range(value, as_of)
    else:
        return None, "unparseable"
    try:
        value = datetime(*parts).date()
    except ValueError:
        return None, "impossible"
    return _check_range(value, as_of)


def _check_range(value: date, as_of: date) -> tuple[date | None, str | None]:
    if value < EARLIEST or value > as_of:
        return None, "impossible"
    return value, None


def parse_date_column(values: pl.Series, as_of: date) -> pl.DataFrame:
    """Parse a column of raw date strings; same height and order, columns `date`, `flag`.

    Polars expressions over the DISTINCT raw strings (same rules as `parse_date`); only
    dates written in Chinese numerals (一九九〇年一月二日) go through Python.
    """
    # A timestamp written the plain ISO way parses to the date of its first 10 characters:
    # cut to those, a column of update times (nearly every value distinct) has a few
    # thousand distinct values. Anything else is parsed as written.
    frame = values.rename("_raw").cast(pl.String).to_frame().with_columns(
        pl.when(pl.col("_raw").str.contains(_ISO_TIMESTAMP))
        .then(pl.col("_raw").str.slice(0, 10))
        .otherwise(pl.col("_raw"))
        .alias("_raw")
    )
    distinct = frame.select(pl.col("_raw").drop_nulls().unique())
    text = pl.col("_raw").str.normalize("NFKC").str.strip_chars()
    distinct = distinct.with_columns(text.alias("_t"))
    ymd = pl.col("_t").str.extract_groups(_YMD.pattern.replace("?P<", "?<"))
    compact = pl.col("_t").str.extract_groups(_COMPACT.pattern.replace("?P<", "?<"))
    serial = pl.col("_t").str.extract(_SERIAL.pattern.replace("?P<", "?<"), 1).cast(pl.Int64, strict=False)
    distinct = distinct.with_columns(
        pl.coalesce(ymd.struct.field("y"), compact.struct.field("y")).alias("_y"),
        pl.coalesce(ymd.struct.field("m"), compact.struct.field("m")).alias("_m"),
        pl.coalesce(ymd.struct.field("d"), compact.struct.field("d")).alias("_d"),
        serial.alias("_n"),
    )
    calendar = pl.concat_str(
        [pl.col("_y"), pl.col("_m").str.zfill(2), pl.col("_d").str.zfill(2)]
    ).str.to_date("%Y%m%d", strict=False)
    from_serial = pl.lit(_EXCEL_EPOCH) + pl.duration(days=pl.col("_n"))
    value = (
        pl.when(pl.col("_y").is_not_null())
        .then(calendar)
        .when(
            pl.col("_n").is_between(_EXCEL_MIN, _EXCEL_MAX)
            & ~(pl.col("_n").is_between(_YEAR_MIN, _YEAR_MAX) & ~pl.col("_t").str.contains(".", literal=True))
        )
        .then(from_serial)
        .otherwise(None)
    )
    distinct = distinct.with_columns(value.alias("_v"))
    in_range = pl.col("_v").is_between(pl.lit(EARLIEST), pl.lit(as_of))
    placeholder = (pl.col("_t") == "") | pl.col("_t").str.to_uppercase().is_in(sorted(PLACEHOLDERS))
    flag = (
        pl.when(placeholder)
        .then(None)
        .when(pl.col("_y").is_not_null() & pl.col("_v").is_null())
        .then(pl.lit("impossible"))  # 2月30日, month 13
        .when(pl.col("_v").is_not_null() & ~in_range)
        .then(pl.lit("impossible"))  # before 1900, in the future
        .when(pl.col("_v").is_null())
        .then(pl.lit("unparseable"))
        .otherwise(None)
    )
    lookup = distinct.select(
        "_raw",
        pl.when(in_range).then(pl.col("_v")).otherwise(None).alias("date"),
        flag.alias("flag"),
    )
    han = lookup.filter(pl.col("flag") == "unparseable").filter(
        pl.col("_raw").str.contains(_HAN_DATE.pattern.replace("?P<", "?<").lstrip("^").rstrip("$"))
    )
    if han.height:
        parsed = [parse_date(v, as_of) for v in han.get_column("_raw").to_list()]
        fixed = pl.DataFrame(
            {"_raw": han.get_column("_raw"), "_date": [p[0] for p in parsed], "_flag": [p[1] for p in parsed]},
            schema={"_raw": pl.String, "_date": pl.Date, "_flag": pl.String},
        )
        lookup = lookup.join(fixed, on="_raw", how="left").select(
            "_raw",
            pl.when(pl.col("_flag").is_not_null() | pl.col("_date").is_not_null())
            .then(pl.col("_date"))
            .otherwise(pl.col("date"))
            .alias("date"),
            pl.when(pl.col("_raw").is_in(han.get_column("_raw").implode())).then(pl.col("_flag")).otherwise(pl.col("flag")).alias("flag"),
        )
    return frame.join(lookup, on="_raw", how="left", maintain_order="left").select("date", "flag")


_SEX_CODES = {
    "M": ("男", "男性", "男士", "1", "M", "MALE", "MAN", "男的", "先生"),
    "F": ("女", "女性", "女士", "2", "F", "FEMALE", "WOMAN", "女的"),
}
SEX_LOOKUP: dict[str, str] = {word: code for code, words in _SEX_CODES.items() for word in words}


def standardize_sex(raw: pl.Expr) -> pl.Expr:
    """`M`, `F` or NULL (GB/T 2261.1 codes 1/2; 0 and 9 mean unknown and stay NULL)."""
    key = nfkc(raw).str.strip_chars().str.to_uppercase()
    return key.replace_strict(list(SEX_LOOKUP), list(SEX_LOOKUP.values()), default=None, return_dtype=pl.String)


# Two birth dates one slip apart: two of year, month, day equal. A differing year counts as a
# slip only when a clerk could have typed it: one digit off (1983/1988) or two neighbouring
# digits swapped (1983/1938). 1983-05-27 and 2011-05-27 (a mother and the child registered
# with her number) are two dates, not one date mistyped.
def _year_digits(year: int) -> tuple[int, ...]:
    return tuple((year // 10 ** (3 - p)) % 10 for p in range(4))


def year_slip(a: int, b: int) -> bool:
    """Years one typed digit apart, or with two neighbouring digits swapped."""
    da, db = _year_digits(a), _year_digits(b)
    differ = [p for p in range(4) if da[p] != db[p]]
    if len(differ) == 1:
        return True
    return len(differ) == 2 and differ[1] == differ[0] + 1 and da[differ[0]] == db[differ[1]] and da[differ[1]] == db[differ[0]]


def one_slip_apart(a: date, b: date) -> bool:
    """Two of year, month, day equal, a differing year one slip off (see `year_slip`)."""
    if a.year != b.year:
        return a.month == b.month and a.day == b.day and year_slip(a.year, b.year)
    return a.month == b.month or a.day == b.day


def year_slip_expr(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """`year_slip` over two integer year columns (null when either is)."""
    da = [(a // 10 ** (3 - p)) % 10 for p in range(4)]
    db = [(b // 10 ** (3 - p)) % 10 for p in range(4)]
    ne = [(da[p] != db[p]).cast(pl.Int8) for p in range(4)]
    n_differ = pl.sum_horizontal(ne)
    swap = pl.any_horizontal(
        [
            (ne[p] == 1) & (ne[p + 1] == 1) & (da[p] == db[p + 1]) & (da[p + 1] == db[p])
            for p in range(3)
        ]
    )
    return pl.when(a.is_null() | b.is_null()).then(None).otherwise((n_differ == 1) | ((n_differ == 2) & swap))


def one_slip_apart_expr(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """`one_slip_apart` over two date columns (null when either is)."""
    same_year = a.dt.year() == b.dt.year()
    same_month, same_day = a.dt.month() == b.dt.month(), a.dt.day() == b.dt.day()
    return (
        pl.when(same_year)
        .then(same_month | same_day)
        .otherwise(same_month & same_day & year_slip_expr(a.dt.year().cast(pl.Int32), b.dt.year().cast(pl.Int32)))
    )
