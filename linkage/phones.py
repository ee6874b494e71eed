"""Phone numbers: mainland mobiles to 11 digits, landlines as `area code-number`.

Polars expressions over the whole column (phone numbers are nearly all distinct).
"""

from __future__ import annotations

import polars as pl

from linkage.id_numbers import nfkc

_MOBILE = r"^1[3-9]\d{9}$"
# Area codes: 010 and 02x are three digits, every other area code is four (0xxx).
_LANDLINE_3 = r"^(0(?:10|2\d))(\d{7,8})$"
_LANDLINE_4 = r"^(0[3-9]\d{2})(\d{7,8})$"


def standardize_phones(frame: pl.DataFrame, column: str = "phone") -> pl.DataFrame:
    """Same height and order as `frame`, columns `phone`, `phone_type` (`mobile`, `landline` or NULL).

    A local number without its area code is unusable for matching (the same digits
    exist in every city) and becomes NULL, as does anything that is not a phone.
    """
    text = (
        nfkc(pl.col(column))
        .str.to_uppercase()
        # An extension is not part of the line: 0575-88001234转801, ext. 801, #801.
        .str.replace(r"(转|分机|EXT|#|X).*$", "")
        # Several numbers in one cell: the first one is the contact number the clerk put first.
        .str.replace(r"[/,;，；、|].*$", "")
    )
    digits = text.str.replace_all(r"\D", "")
    work = frame.select(digits.alias("_d"))
    # Country code: +86 / 0086 / 86 before a mobile; before a landline the trunk 0 is dropped (+86 575 ...).
    work = work.with_columns(
        pl.when(pl.col("_d").str.contains(r"^(0086|86)1[3-9]\d{9}$"))
        .then(pl.col("_d").str.replace(r"^(0086|86)", ""))
        .when(pl.col("_d").str.contains(r"^(0086|86)[1-9]\d{8,10}$"))
        .then(pl.lit("0") + pl.col("_d").str.replace(r"^(0086|86)", ""))
        .otherwise(pl.col("_d"))
        .alias("_d")
    )
    d = pl.col("_d")
    phone = (
        pl.when(d.str.contains(_MOBILE))
        .then(d)
        .when(d.str.contains(_LANDLINE_3))
        .then(d.str.replace(_LANDLINE_3, "$1-$2"))
        .when(d.str.contains(_LANDLINE_4))
        .then(d.str.replace(_LANDLINE_4, "$1-$2"))
        .otherwise(None)
    )
    return work.select(
        phone.alias("phone"),
        pl.when(d.str.contains(_MOBILE))
        .then(pl.lit("mobile"))
        .when(d.str.contains(_LANDLINE_3) | d.str.contains(_LANDLINE_4))
        .then(pl.lit("landline"))
        .otherwise(None)
        .alias("phone_type"),
    )
