"""Address text: one written form, with the province / city / county prefix moved into a region code.

Runs in Python over the DISTINCT raw addresses of a batch (addresses repeat for every
member of a household and across sources); the caller joins the result back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache

import polars as pl

from linkage.regions import TOWNSHIP_PATTERN, region_index

_HAN_NUMERAL = "零〇一二两三四五六七八九十百千"
_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_UNIT = {"十": 10, "百": 100, "千": 1000}
# Chinese numerals become digits only in front of the words that count things in an address
# (十二号, 三单元, 五楼, 第三组); elsewhere they are part of a place name (三里屯, 五一路, 十里铺).
_NUMBERED = re.compile(f"(第?)([{_HAN_NUMERAL}]+)(号楼|号|单元|幢|栋|楼|层|室|组|弄|户|排|期)")

# Punctuation that carries nothing in an address. Dashes stay: 3-2-301 is building-unit-room.
_DROP = re.compile(r"[\s,，。.、;；:：'\"“”‘’()（）\[\]【】<>《》\u200b\u200c\u200d\u2060\ufeff]")


@cache
def han_number(text: str) -> int | None:
    """十二 → 12, 三〇一 → 301, 一百零五 → 105, 两千 → 2000; None if not a number."""
    if not text or any(c not in _DIGIT and c not in _UNIT for c in text):
        return None
    if not any(c in _UNIT for c in text):
        # Read digit by digit, as room and house numbers are said: 三〇一 is 301.
        return int("".join(str(_DIGIT[c]) for c in text))
    total, current = 0, 0
    for c in text:
        if c in _DIGIT:
            current = _DIGIT[c]
        else:
            total += (current or 1) * _UNIT[c]
            current = 0
    return total + current


def _numbers_to_digits(match: re.Match[str]) -> str:
    number = han_number(match.group(2))
    if number is None:
        return match.group(0)
    return f"{match.group(1)}{number}{match.group(3)}"


def _normalize_expr(raw: pl.Expr) -> pl.Expr:
    # Everything but the Chinese-numeral step is a vectorised regex over the column.
    return raw.str.normalize("NFKC").str.replace_all(_DROP.pattern, "")


def _synonyms_expr(text: pl.Expr) -> pl.Expr:
    return (
        text.str.replace_all(r"(\d+)#", "${1}号")
        .str.replace_all(r"(\d+)号楼", "${1}栋")
        .str.replace_all("幢", "栋", literal=True)
        .str.replace_all(r"(\d+)室", "${1}")
    )


def normalize_address_texts(raw: pl.Series) -> pl.Series:
    """NFKC (full-width → half-width), no spaces or stray punctuation, numerals before
    counting words as digits, one word for a building.

    Synonyms unified: 幢 = 栋 (both "building"); 12号楼 = 12栋; 12# = 12号; a room's 室
    dropped (301室 = 301). 弄 and 巷 are NOT unified: in Shanghai 弄 is a numbered lane off a
    road (长乐路123弄) while 巷 names an alley (青石巷), so treating them alike would merge
    different places.
    """
    frame = raw.rename("_a").to_frame().with_columns(_normalize_expr(pl.col("_a"))).with_row_index("_i")
    # Python only for the values that hold a Chinese numeral before a counting word.
    numbered = frame.filter(pl.col("_a").str.contains(_NUMBERED.pattern))
    if numbered.height:
        fixed = [_NUMBERED.sub(_numbers_to_digits, t) for t in numbered.get_column("_a").to_list()]
        frame = frame.join(
            numbered.select("_i", pl.Series("_fixed", fixed, dtype=pl.String)), on="_i", how="left", maintain_order="left"
        ).with_columns(pl.coalesce("_fixed", "_a").alias("_a"))
    return frame.select(_synonyms_expr(pl.col("_a"))).get_column("_a")


def normalize_address_text(text: str) -> str:
    """`normalize_address_texts` for one value."""
    return normalize_address_texts(pl.Series([text], dtype=pl.String))[0]


def _is_empty_address(text: str | None) -> bool:
    return not text or not _MEANINGFUL.search(text) or text in _PLACEHOLDERS


_MEANINGFUL = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]")
_PLACEHOLDERS = frozenset({"无", "不详", "未知", "暂无", "空", "NULL", "NONE", "N/A", "NA"})


# The province/city/county prefix never holds a digit and is at most 25 characters long
# (新疆维吾尔自治区伊犁哈萨克自治州察布查尔锡伯自治县); it is read once per distinct head.
_HEAD = r"^([^0-9]{0,28})"


def standardize_addresses(raw: pl.Series, preferred_cities: Sequence[str] = ()) -> pl.DataFrame:
    """Standardize the DISTINCT values of `raw`: columns `address_raw`, `address` (without
    its province/city/county prefix), `address_region` (code of the finest level the prefix
    names), `township_name` (the 街道/镇/乡 the rest starts with)."""
    distinct = raw.drop_nulls().unique()
    frame = pl.DataFrame({"address_raw": distinct, "_a": normalize_address_texts(distinct)})
    empty = (
        pl.col("_a").is_null()
        | ~pl.col("_a").str.contains(_MEANINGFUL.pattern)
        | pl.col("_a").str.to_uppercase().is_in(sorted(_PLACEHOLDERS))
    )
    frame = frame.with_columns(pl.when(empty).then(None).otherwise(pl.col("_a")).alias("_a"))
    frame = frame.with_columns(pl.col("_a").str.extract(_HEAD, 1).alias("_head"))
    heads = frame.get_column("_head").drop_nulls().unique().to_list()
    index = region_index()
    codes: list[str | None] = []
    consumed: list[int] = []
    for head in heads:
        code, rest = index.read_prefix(head, preferred_cities)
        codes.append(code)
        consumed.append(len(head) - len(rest) if code else 0)
    prefixes = pl.DataFrame(
        {"_head": heads, "address_region": codes, "_n": consumed},
        schema={"_head": pl.String, "address_region": pl.String, "_n": pl.Int64},
    )
    address = pl.col("_a").str.slice(pl.col("_n").fill_null(0))
    return (
        frame.join(prefixes, on="_head", how="left")
        .with_columns(pl.when(address == "").then(None).otherwise(address).alias("address"))
        .select(
            "address_raw",
            "address",
            "address_region",
            pl.col("address").str.extract(TOWNSHIP_PATTERN, 1).alias("township_name"),
        )
    )


def standardize_address(raw: str | None, preferred_cities: Sequence[str] = ()) -> tuple[str | None, str | None]:
    """(address, region code) for one raw address; batches go through `standardize_addresses`."""
    if raw is None:
        return None, None
    row = standardize_addresses(pl.Series([raw], dtype=pl.String), preferred_cities).row(0, named=True)
    return row["address"], row["address_region"]
