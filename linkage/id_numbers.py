"""Identity numbers: GB 11643-1999 resident ids and the other documents people register with.

Everything here is polars expressions over the whole column: identity numbers are
nearly all distinct, so there is nothing to gain from a distinct-values pass.
"""

from __future__ import annotations

from datetime import date

import polars as pl

# ISO 7064 MOD 11-2 as GB 11643-1999 applies it: weight of position i is 2^(17-i) mod 11.
WEIGHTS: tuple[int, ...] = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARACTERS = "10X98765432"

EARLIEST_BIRTH = date(1900, 1, 1)

# Prefixes of the 18-digit residence permits (居住证) of Hong Kong, Macau and Taiwan residents:
# same layout and check character as a resident id, but the "region" is not a place in the mainland.
_PERMIT_PREFIX_TYPE = {"810000": "hk_macau_permit", "820000": "hk_macau_permit", "830000": "taiwan_permit"}

# Separators clerks type inside numbers: spaces, dashes, dots, slashes, brackets of the old
# Taiwan permit "0123456789(B)", and zero-width characters that survive copy-paste from web forms.
_SEPARATORS = r"[\s\-_–—/\\.,，。:;'\"()（）\[\]\u200b\u200c\u200d\u2060\ufeff]"


def nfkc(text: pl.Expr) -> pl.Expr:
    """Unicode NFKC (full-width → half-width), applied only to values that hold a non-ASCII
    character: most cells are plain ASCII, and NFKC over every row costs ~4x more."""
    return pl.when(text.str.contains(r"[^\x00-\x7F]")).then(text.str.normalize("NFKC")).otherwise(text)


def check_character(first17: str) -> str:
    """The GB 11643-1999 check character for the first 17 digits of a resident id."""
    if len(first17) != 17 or not first17.isdigit():
        raise ValueError(f"need 17 digits, got {first17!r}")
    total = sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARACTERS[total % 11]


def upgrade_15_to_18(id15: str) -> str:
    """Upgrade a first-generation 15-digit id: insert the century 19 before YYMMDD and add the check character."""
    if len(id15) != 15 or not id15.isdigit():
        raise ValueError(f"need 15 digits, got {id15!r}")
    first17 = id15[:6] + "19" + id15[6:]
    return first17 + check_character(first17)


def _check_character_expr(first17: pl.Expr) -> pl.Expr:
    # One integer parse, then digits by arithmetic: no per-digit string slices.
    codes = first17.str.to_integer(base=10, strict=False)
    total = pl.sum_horizontal(
        [((codes // (10 ** (16 - i))) % 10) * w for i, w in enumerate(WEIGHTS)]
    )
    return (total % 11).replace_strict(
        list(range(11)), list(CHECK_CHARACTERS), return_dtype=pl.String
    )


def standardize_id_numbers(frame: pl.DataFrame, column: str = "id_number", *, as_of: date) -> pl.DataFrame:
    """Standardize the identity numbers in `frame[column]`.

    Returns a frame of the same height and order with the columns `id_number`
    (normalised, 15-digit resident ids upgraded to 18, NULL when empty), `id_type`,
    `id_valid`, `id_upgraded`, `id_birth_date`, `id_sex`, `id_region`.
    `id_valid` is NULL for documents that carry no check character (passports, the
    H/M home-return permits, 8-digit Taiwan permits) and false for anything that
    should have had one and does not check, or that is not a document we know.
    """
    raw = pl.col(column)
    cleaned = (
        nfkc(raw)
        .str.to_uppercase()
        .str.replace_all(_SEPARATORS, "")
    )
    work = frame.select(cleaned.alias("_id"))
    # A cell holding only words (无, 不详, 未知) or punctuation is an empty cell, not an id; so
    # is a number whose last digits a spreadsheet lost (330602199001021###, flows.readers.cell_text):
    # equal prefixes of two people's ids must not count as the same id.
    work = work.with_columns(
        pl.when(pl.col("_id").str.contains(r"[0-9A-Z]") & ~pl.col("_id").str.contains("#", literal=True))
        .then(pl.col("_id"))
        .otherwise(None)
        .alias("_id")
    )
    # Intermediate results are materialised as columns: eager polars would otherwise evaluate a
    # sub-expression again every place it is used.
    work = work.with_columns(pl.col("_id").str.contains(r"^\d{15}$").fill_null(False).alias("id_upgraded"))
    work = work.with_columns(
        pl.when(pl.col("id_upgraded"))
        .then(pl.col("_id").str.slice(0, 6) + pl.lit("19") + pl.col("_id").str.slice(6, 9))
        .otherwise(None)
        .alias("_f17_15")
    )
    work = work.with_columns(
        pl.when(pl.col("id_upgraded"))
        .then(pl.col("_f17_15") + _check_character_expr(pl.col("_f17_15")))
        .otherwise(pl.col("_id"))
        .alias("id_number"),
    )
    is18 = pl.col("id_number").str.contains(r"^\d{17}[0-9X]$").fill_null(False)
    prefix6 = pl.col("id_number").str.slice(0, 6)
    permit_type = prefix6.replace_strict(
        list(_PERMIT_PREFIX_TYPE), list(_PERMIT_PREFIX_TYPE.values()), default=None, return_dtype=pl.String
    )
    id_type = (
        pl.when(pl.col("id_number").is_null())
        .then(None)
        .when(pl.col("_is18"))
        .then(pl.coalesce(permit_type, pl.lit("resident_id")))
        # Chinese passports: E + 8 digits (or E + letter + 7 digits since 2019), G/D/S/P older series.
        .when(pl.col("id_number").str.contains(r"^(E[A-HJ-NP-Z0-9]\d{7}|[EGDSP]\d{8})$"))
        .then(pl.lit("passport"))
        # 港澳居民来往内地通行证 (回乡证): H (Hong Kong) / M (Macau) + 8 or 10 digits.
        .when(pl.col("id_number").str.contains(r"^[HM]\d{8}(\d{2})?$"))
        .then(pl.lit("hk_macau_permit"))
        # 台湾居民来往大陆通行证 (台胞证): 8 digits now, 10 digits + a check letter before 2015.
        .when(pl.col("id_number").str.contains(r"^(\d{8}|\d{10}[A-Z])$"))
        .then(pl.lit("taiwan_permit"))
        .otherwise(pl.lit("other"))
    )
    work = work.with_columns(is18.alias("_is18"))
    work = work.with_columns(id_type.alias("id_type"))
    birth = (
        pl.when(pl.col("_is18"))
        .then(pl.col("id_number").str.slice(6, 8).str.to_date("%Y%m%d", strict=False))
        .otherwise(None)
    )
    work = work.with_columns(
        birth.alias("_birth"),
        pl.when(pl.col("_is18")).then(pl.col("id_number").str.slice(0, 17)).otherwise(None).alias("_f17"),
    )
    check_ok = pl.col("id_number").str.slice(17, 1) == _check_character_expr(pl.col("_f17"))
    work = work.with_columns((pl.col("_is18") & check_ok).fill_null(False).alias("_check_ok"))
    birth_real = pl.col("_birth").is_between(pl.lit(EARLIEST_BIRTH), pl.lit(as_of)).fill_null(False)
    valid18 = pl.col("_check_ok") & birth_real
    id_valid = (
        pl.when(pl.col("id_number").is_null())
        .then(None)
        .when(pl.col("_is18"))
        .then(valid18)
        .when(pl.col("id_type").is_in(["passport", "hk_macau_permit", "taiwan_permit"]))
        .then(None)
        .otherwise(pl.lit(False))
    )
    work = work.with_columns(id_valid.alias("id_valid"))
    valid = pl.col("id_valid").fill_null(False)
    return work.select(
        "id_number",
        "id_type",
        "id_valid",
        pl.col("id_upgraded"),
        pl.when(valid).then(pl.col("_birth")).otherwise(None).alias("id_birth_date"),
        pl.when(valid)
        .then(
            pl.when(pl.col("id_number").str.slice(16, 1).cast(pl.Int32, strict=False) % 2 == 1)
            .then(pl.lit("M"))
            .otherwise(pl.lit("F"))
        )
        .otherwise(None)
        .alias("id_sex"),
        pl.when(valid & (pl.col("id_type") == "resident_id")).then(prefix6).otherwise(None).alias("id_region"),
    )


# The form of a resident id (or HK/Macau/Taiwan residence permit) as DuckDB macros, for rules
# that must run in SQL over every row. ``identity_number_form(value)`` is
#   'id18'             17 digits, a birth date from 1900 to today, and the GB 11643-1999 check
#                      character: a resident id as such;
#   'id18_wrong_check' the same but for the check character: an id with a typo, or a number of
#                      the same layout (region code + date + sequence, as many government systems
#                      number their records), which passes the check about once in 11 by chance;
#   'id15'             15 digits with a real yymmdd birth date: a first-generation id, which has
#                      no check character, or a number of that layout;
#   NULL               anything else.
# The value is taken as it is: trim it first where it may carry spaces (the readers trim every
# cell, so ingest's record ids carry none). ``is_identity_number(value)`` is form 'id18'.
IDENTITY_NUMBER_FORM_MACRO = "identity_number_form"
IDENTITY_NUMBER_MACRO = "is_identity_number"
# ``own_id_number_mistyped(value, id_number)``: 18 characters, all but at most one of them those
# of the 18-character ``id_number`` (a record id that is the row's own id number typed with one
# character wrong: whatever the check character or the birth date then say). 18 bytes and 18
# characters each (the byte length is free, and most record ids stop there), so that hamming()
# never sees two lengths; false where either is null.
OWN_ID_NUMBER_MISTYPED_MACRO = "own_id_number_mistyped"

_WEIGHTED_DIGITS_SQL = " + ".join(
    f"(ascii(substr(value, {position}, 1)) - 48) * {weight}"
    for position, weight in enumerate(WEIGHTS, start=1)
)
# CASE, not AND: DuckDB then computes the date and the check sum only for the values of the
# form, not for every row of the night (10M record ids of another shape: about 0.1 s; the
# first version, with AND, took 19 s). The byte length goes first: it is free, and most
# record ids are shorter than 15. One flat CASE, and no trim() inside: values of the form cost
# about 0.4 s per million so, and 4-5x as much with CASEs nested in another's branches or with
# trim(value) at each of the 20 places the value is read.
_IDENTITY_NUMBER_MACRO_SQL = f"""
create or replace temp macro {IDENTITY_NUMBER_FORM_MACRO}(value) as (
    case
        when coalesce(strlen(value), 0) not in (15, 18)
             or not regexp_full_match(value, '[1-9][0-9]{{14}}([0-9]{{2}}[0-9Xx])?') then null
        when strlen(value) = 15 then (
            case when try_strptime('19' || substr(value, 7, 6), '%Y%m%d') is not null then 'id15' end
        )
        when substr(value, 7, 4) < '{EARLIEST_BIRTH.year}'
             or coalesce(try_strptime(substr(value, 7, 8), '%Y%m%d')::date > current_date, true) then null
        when substr('{CHECK_CHARACTERS}', (({_WEIGHTED_DIGITS_SQL}) % 11 + 1)::bigint, 1)
             = upper(substr(value, 18, 1)) then 'id18'
        else 'id18_wrong_check'
    end
);
create or replace temp macro {IDENTITY_NUMBER_MACRO}(value) as (
    coalesce({IDENTITY_NUMBER_FORM_MACRO}(value) = 'id18', false)
);
create or replace temp macro {OWN_ID_NUMBER_MISTYPED_MACRO}(value, id_number) as (
    case when strlen(value) = 18 and strlen(id_number) = 18 and length(value) = 18 and length(id_number) = 18
         then hamming(upper(value), upper(id_number)) <= 1 else false end
);
"""


# linkage.households.mask_id_number's form for an id of 15 or 18 characters (any value longer
# than 10), as SQL over ``{value}``: the first 6, 8 stars, the last 4.
MASKED_ID_NUMBER_SQL = "substr({value}, 1, 6) || '********' || right({value}, 4)"


def define_identity_number_macro(con) -> None:
    """Define ``identity_number_form(value)``, ``is_identity_number(value)`` and
    ``own_id_number_mistyped(value, id_number)`` on ``con`` (a DuckDB connection; temporary,
    per connection)."""
    con.execute(_IDENTITY_NUMBER_MACRO_SQL)
