"""Administrative regions: GB/T 2260 codes for the province / city / county an address names,
and township (乡镇街道) codes learned from the extracts themselves.

Township codes change as townships merge and are renamed, and departments' extracts
carry different vintages; the contract therefore takes a township's 9-digit code first
from the (code, place name) pairs that the batch's own extracts show.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import polars as pl

from linkage.id_numbers import nfkc

DATA_DIR = Path(__file__).parent / "data"

# County names that several cities share and that are too generic to read without the city
# in front of them (an address saying 城区 does not say which city's 城区).
_GENERIC_COUNTY_NAMES = frozenset({"城区", "郊区", "矿区"})

_PROVINCE_SUFFIX = re.compile(r"(维吾尔自治区|壮族自治区|回族自治区|自治区|特别行政区|省|市)$")
_CITY_SUFFIX = re.compile(r"(([\u4e00-\u9fff]{1,8}?族)+自治州|自治州|地区|盟|市)$")

# A township or street: the first run of non-digits ending in 街道 / 镇 / 乡 / 苏木 (Inner Mongolia).
TOWNSHIP_PATTERN = r"^([^\d]{1,12}?(?:街道|镇|乡|苏木))"
_TOWNSHIP_RE = re.compile(TOWNSHIP_PATTERN)


@cache
def region_table() -> pl.DataFrame:
    """The GB/T 2260 table in linkage/data (see its README for source and date)."""
    return pl.read_csv(DATA_DIR / "gbt2260_regions.csv", schema_overrides={"code": pl.String})


@dataclass
class RegionIndex:
    """Names → codes for reading the province / city / county prefix of an address."""

    provinces: dict[str, str] = field(default_factory=dict)
    cities: dict[str, list[str]] = field(default_factory=dict)
    city_short: dict[str, list[str]] = field(default_factory=dict)
    counties: dict[str, list[str]] = field(default_factory=dict)
    lengths_by_first: dict[str, tuple[int, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls) -> RegionIndex:
        index = cls()
        with open(DATA_DIR / "gbt2260_regions.csv", encoding="utf-8") as f:
            rows = sorted(csv.DictReader(f), key=lambda r: (r["status"] != "current", r["code"]))
        for row in rows:
            code, name, level = row["code"], row["name"], row["level"]
            if level == "province":
                index.provinces.setdefault(name, code)
                short = _PROVINCE_SUFFIX.sub("", name)
                if len(short) >= 2:
                    index.provinces.setdefault(short, code)
            elif level == "city":
                _add(index.cities, name, code)
                short = _CITY_SUFFIX.sub("", name)
                if len(short) >= 2 and short != name:
                    _add(index.city_short, short, code)
            else:
                _add(index.counties, name, code)
        lengths: dict[str, set[int]] = {}
        for names in (index.provinces, index.cities, index.city_short, index.counties):
            for name in names:
                lengths.setdefault(name[0], set()).add(len(name))
        index.lengths_by_first = {c: tuple(sorted(ls, reverse=True)) for c, ls in lengths.items()}
        return index

    def read_prefix(self, text: str, preferred_cities: Sequence[str] = ()) -> tuple[str | None, str]:
        """(finest code the prefix names, text after the prefix).

        `preferred_cities`: 4-digit city prefixes in order of preference, used only to choose
        between counties of the same name (鼓楼区) when the address names no city.
        """
        pos = 0
        province = city = county = None
        hit = self._match(text, pos, lambda n: self.provinces.get(n))
        # 吉林市 is a city of 吉林省: a province's short name followed by 市 is that city, not the province.
        if hit and not text.startswith("市", hit[1]):
            province, pos = hit
        # A city's short name (绍兴) only counts once the province is known; alone it could be a street.
        hit = self._match(text, pos, lambda n: self._pick(self.cities.get(n), province))
        if hit is None and province:
            hit = self._match(text, pos, lambda n: self._pick(self.city_short.get(n), province))
        if hit:
            city, pos = hit
        scope = city[:4] if city else (province[:2] if province else None)
        hit = self._match(text, pos, lambda n: self._pick_county(n, scope, preferred_cities))
        if hit:
            county, pos = hit
        code = county or city or province
        if code is None:
            return None, text
        return code, text[pos:]

    def _match(self, text: str, pos: int, lookup) -> tuple[str, int] | None:
        if pos >= len(text):
            return None
        # Only the name lengths that exist for this first character, longest first: a handful of
        # dictionary probes per address instead of one per possible length.
        for length in self.lengths_by_first.get(text[pos], ()):
            if pos + length > len(text):
                continue
            code = lookup(text[pos : pos + length])
            if code:
                return code, pos + length
        return None

    @staticmethod
    def _pick(codes: list[str] | None, province: str | None) -> str | None:
        if not codes:
            return None
        if province:
            codes = [c for c in codes if c[:2] == province[:2]]
        return codes[0] if len(codes) == 1 else None

    def _pick_county(self, name: str, scope: str | None, preferred_cities: Sequence[str]) -> str | None:
        codes = self.counties.get(name)
        if not codes:
            return None
        if scope:
            inside = [c for c in codes if c.startswith(scope)]
            return inside[0] if len(inside) == 1 else None
        if name in _GENERIC_COUNTY_NAMES:
            return None
        if len(codes) == 1:
            return codes[0]
        for city in preferred_cities:
            inside = [c for c in codes if c.startswith(city)]
            if len(inside) == 1:
                return inside[0]
        return None


def _add(index: dict[str, list[str]], name: str, code: str) -> None:
    codes = index.setdefault(name, [])
    if code not in codes:
        codes.append(code)


@cache
def region_index() -> RegionIndex:
    return RegionIndex.build()


def township_name(text: str | None) -> str | None:
    """The township / street an address (prefix already removed) starts with: 城南街道外山村12号 → 城南街道."""
    if not text:
        return None
    m = _TOWNSHIP_RE.match(text)
    return m.group(1) if m else None


def normalize_region_code(raw: pl.Expr) -> pl.Expr:
    """A region cell as a code: digits only; a 12-digit statistical code keeps its first 9
    digits; a township part of 000 means the county itself. Anything else is NULL."""
    # Two regex passes and no repeated sub-expression: this runs over every row of the batch.
    digits = nfkc(raw).str.replace_all(r"\s", "")
    county_only = digits.str.replace(r"^(\d{6})000(\d{3})?$", "${1}")
    return county_only.str.extract(r"^(\d{6}(?:\d{3})?)(?:\d{3})?$", 1)


def learn_township_codes(pairs: pl.DataFrame) -> pl.DataFrame:
    """From observed (`county_code`, `township_name`, `township_code`) rows, one code per
    (county_code, township_name): the most often seen, the smallest on a tie (deterministic).

    Returns `county_code, township_name, township_code, seen, codes_seen`.
    """
    counted = (
        pairs.drop_nulls(["county_code", "township_name", "township_code"])
        .group_by(["county_code", "township_name", "township_code"])
        .agg(pl.len().alias("seen"))
    )
    return (
        counted.sort(["county_code", "township_name", "seen", "township_code"], descending=[False, False, True, False])
        .group_by(["county_code", "township_name"], maintain_order=True)
        .agg(
            pl.col("township_code").first(),
            pl.col("seen").first(),
            pl.len().alias("codes_seen"),
        )
    )


def learn_township_aliases(pairs: pl.DataFrame, learned: pl.DataFrame) -> pl.DataFrame:
    """Codes that the extracts pair with the same (county_code, township_name) are one township.

    From the same observed rows as `learn_township_codes` and its result (`learned`): each
    code seen for a (county, name) group, other than the group's chosen code, maps to that
    chosen code, when the code is seen with that one name only and so is the chosen code. A
    code seen with two names (renamed in one vintage, or reused for another township in a
    later one) says nothing certain about which township it is, and is left as given.

    Returns `township_code, same_as` (one row per code that maps to another).
    """
    codes = pairs.drop_nulls(["county_code", "township_name", "township_code"]).unique(
        ["county_code", "township_name", "township_code"]
    )
    # The county is the code's first six digits, so a code's groups differ by name only.
    one_name = codes.group_by("township_code").agg(pl.len().alias("_names")).filter(pl.col("_names") == 1)
    chosen = learned.select("county_code", "township_name", pl.col("township_code").alias("same_as")).join(
        one_name.select(pl.col("township_code").alias("same_as")), on="same_as", how="semi"
    )
    return (
        codes.join(one_name.select("township_code"), on="township_code", how="semi")
        .join(chosen, on=["county_code", "township_name"], how="inner")
        .filter(pl.col("township_code") != pl.col("same_as"))
        .select("township_code", "same_as")
        .sort("township_code")
    )


def preferred_cities(codes: pl.Series) -> list[str]:
    """4-digit city prefixes ranked by how often the batch's own region codes name them."""
    cities = codes.drop_nulls().filter(~codes.drop_nulls().str.ends_with("0000")).str.slice(0, 4)
    if cities.is_empty():
        return []
    counted = cities.value_counts(name="n").sort(["n", cities.name], descending=[True, False])
    return counted.get_column(cities.name).to_list()
