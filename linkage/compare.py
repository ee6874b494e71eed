"""Comparison vectors: for each candidate pair, one agreement level per comparison.

Comparisons are declared as data (frozen dataclasses), as recordlinkage and Splink do:
the model learns one m and u probability per (comparison, level), and explain prints
the level labels. Level -1 means "cannot say" (a side is empty) and weighs nothing.

Everything is computed over whole columns (polars expressions, rapidfuzz ``cpdist``
over arrays); nothing loops over pairs in Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from rapidfuzz import distance, process

from linkage.dates import one_slip_apart_expr

if TYPE_CHECKING:
    import recordlinkage

NULL_LEVEL = -1


def _cpdist(a: pl.Series, b: pl.Series, scorer, only: np.ndarray | None = None) -> np.ndarray:
    """Pairwise scorer over two aligned string columns; 0 where a side is null.

    ``only``: score just these rows (the others are already decided, e.g. equal strings),
    which spares most of the work: most candidate pairs agree exactly.
    """
    out = np.zeros(len(a), dtype=np.float64)
    mask = (a.is_not_null() & b.is_not_null()).to_numpy()
    if only is not None:
        mask &= only
    if mask.any():
        idx = np.flatnonzero(mask)
        out[idx] = process.cpdist(
            a.filter(pl.Series(mask)).to_list(),
            b.filter(pl.Series(mask)).to_list(),
            scorer=scorer,
            workers=-1,
        )
    return out


def _levels_from_conditions(conditions: list[np.ndarray], null_mask: np.ndarray) -> np.ndarray:
    """Level = index of the first true condition counted from the top; ``conditions`` are
    given from the highest level down, level 0 is "none of them"."""
    gamma = np.zeros(len(null_mask), dtype=np.int8)
    top = len(conditions)
    for i, cond in enumerate(reversed(conditions)):
        gamma[cond] = i + 1
    gamma[null_mask] = NULL_LEVEL
    assert gamma.max(initial=0) <= top
    return gamma


@dataclass(frozen=True)
class Comparison:
    """Base: a named comparison with labelled levels (index 0 = disagree)."""

    name: str
    description: str
    levels: tuple[str, ...]
    # Levels whose weight is adjusted by how common the agreed value is (张伟 vs 欧阳娜娜).
    tf_levels: tuple[int, ...] = ()
    tf_column: str | None = None

    def gamma(self, pairs: pl.DataFrame) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def spec(self) -> dict:
        return {
            "name": self.name,
            "kind": type(self).__name__,
            "description": self.description,
            "levels": list(self.levels),
            "tf_levels": list(self.tf_levels),
            "tf_column": self.tf_column,
        }


def id_to_15(col: str) -> pl.Expr:
    """The 15-digit form of a resident id (drops the century and the check character)."""
    c = pl.col(col)
    return pl.when(c.str.len_chars() == 18).then(c.str.slice(0, 6) + c.str.slice(8, 9)).otherwise(c)


@dataclass(frozen=True)
class IdNumberComparison(Comparison):
    """Exact (15 and 18 forms count as one), one typo apart (a digit, an adjacent swap), different."""

    def gamma(self, pairs: pl.DataFrame) -> np.ndarray:
        a, b = pairs["id_number_l"], pairs["id_number_r"]
        exact = pairs.select(
            (pl.col("id_number_l") == pl.col("id_number_r"))
            | (
                (pl.col("id_number_l").str.len_chars() != pl.col("id_number_r").str.len_chars())
                & (id_to_15("id_number_l") == id_to_15("id_number_r"))
            )
        ).to_series().fill_null(False).to_numpy()
        # OSA counts an adjacent swap as one edit, as a clerk's slip is.
        osa = _cpdist(a, b, distance.OSA.distance, only=~exact)
        osa[exact] = 0
        null = (a.is_null() | b.is_null()).to_numpy()
        if "id_foreign_l" in pairs.columns:
            # Someone else's number (a parent's) says nothing about who the record is,
            # unless it is the very number of the other record (then the rules judge).
            foreign = (pairs["id_foreign_l"].fill_null(False) | pairs["id_foreign_r"].fill_null(False)).to_numpy()
            null = null | (foreign & ~exact)
        near = (osa <= 1) & ~null
        return _levels_from_conditions([exact, near], null)


@dataclass(frozen=True)
class NameComparison(Comparison):
    """Same name; same pinyin (homophones, traditional/simplified, han vs romanized);
    same syllables in any order; pinyin Jaro-Winkler above thresholds."""

    thresholds: tuple[float, ...] = (0.94, 0.88)

    def gamma(self, pairs: pl.DataFrame) -> np.ndarray:
        same_name = (pairs["name_l"] == pairs["name_r"]).fill_null(False).to_numpy()
        py_l, py_r = pairs["name_pinyin_l"], pairs["name_pinyin_r"]
        same_pinyin = (py_l == py_r).fill_null(False).to_numpy()
        if "pinyin_compact_l" in pairs.columns:
            c_l, c_r = pairs["pinyin_compact_l"], pairs["pinyin_compact_r"]
            same_pinyin |= (c_l == c_r).fill_null(False).to_numpy()
        same_sorted = (pairs["name_pinyin_sorted_l"] == pairs["name_pinyin_sorted_r"]).fill_null(False).to_numpy()
        if "pinyin_reordered_l" in pairs.columns:
            same_sorted |= (
                (c_l == pairs["pinyin_reordered_r"]).fill_null(False) | (pairs["pinyin_reordered_l"] == c_r).fill_null(False)
            ).to_numpy()
        decided = same_name | same_pinyin | same_sorted
        jw_scorer = distance.JaroWinkler.normalized_similarity
        if "given_pinyin_l" in pairs.columns and "surname_pinyin_l" in pairs.columns:
            # Same han surname: judge the given names alone. On the whole string the shared
            # prefix ("zhang ") lifts 张静瑶 / 张红 above 0.88; twins are exactly that case.
            g_l, g_r = pairs["given_pinyin_l"], pairs["given_pinyin_r"]
            by_given = (
                (pairs["surname_pinyin_l"] == pairs["surname_pinyin_r"]).fill_null(False)
                & g_l.is_not_null() & g_r.is_not_null()
            ).to_numpy()
            jw = _cpdist(py_l, py_r, jw_scorer, only=~decided & ~by_given)
            jw_given = _cpdist(g_l, g_r, jw_scorer, only=~decided & by_given)
            jw = np.where(by_given, jw_given, jw)
        else:
            jw = _cpdist(py_l, py_r, jw_scorer, only=~decided)
        null = (py_l.is_null() | py_r.is_null()).to_numpy() & ~same_name
        conds = [same_name, same_pinyin, same_sorted] + [jw >= t for t in self.thresholds]
        if "given_pinyin_l" in pairs.columns:
            # 王骏晖 / 玉骏晖: a mistyped surname leaves the whole given name standing.
            conds.append((pairs["given_pinyin_l"] == pairs["given_pinyin_r"]).fill_null(False).to_numpy())
        else:
            conds.append(np.zeros(len(pairs), dtype=bool))
        return _levels_from_conditions(conds, null)


@dataclass(frozen=True)
class BirthDateComparison(Comparison):
    """Same date; day and month swapped; two of year, month, day equal (one typo); same year."""

    column: str = "birth"

    def gamma(self, pairs: pl.DataFrame) -> np.ndarray:
        lft, rgt = pl.col(f"{self.column}_l"), pl.col(f"{self.column}_r")
        f = pairs.select(
            (lft == rgt).alias("same"),
            (
                (lft.dt.year() == rgt.dt.year())
                & (lft.dt.month() == rgt.dt.day())
                & (lft.dt.day() == rgt.dt.month())
            ).alias("swapped"),
            # A differing year only when one typed digit or one swap away (linkage.dates).
            one_slip_apart_expr(lft, rgt).alias("two_of_three"),
            (lft.dt.year() == rgt.dt.year()).alias("same_year"),
            (lft.is_null() | rgt.is_null()).alias("null"),
        )
        conds = [f[c].fill_null(False).to_numpy() for c in ("same", "swapped", "two_of_three", "same_year")]
        return _levels_from_conditions(conds, f["null"].to_numpy())


@dataclass(frozen=True)
class ExactComparison(Comparison):
    """Equal or not (sex, phone)."""

    column: str = ""

    def gamma(self, pairs: pl.DataFrame) -> np.ndarray:
        a, b = pairs[f"{self.column}_l"], pairs[f"{self.column}_r"]
        same = (a == b).fill_null(False).to_numpy()
        return _levels_from_conditions([same], (a.is_null() | b.is_null()).to_numpy())


@dataclass(frozen=True)
class RegionComparison(Comparison):
    """Best agreement over the regions each side names: same township/street, same county."""

    columns: tuple[str, ...] = ("hukou_region", "residence_region")

    def gamma(self, pairs: pl.DataFrame) -> np.ndarray:
        n = len(pairs)
        same9 = np.zeros(n, dtype=bool)
        same6 = np.zeros(n, dtype=bool)
        any_l = np.zeros(n, dtype=bool)
        any_r = np.zeros(n, dtype=bool)
        for cl in self.columns:
            a = pairs[f"{cl}_l"]
            any_l |= a.is_not_null().to_numpy()
            for cr in self.columns:
                b = pairs[f"{cr}_r"]
                any_r |= b.is_not_null().to_numpy()
                nine = (a.str.len_chars() >= 9) & (b.str.len_chars() >= 9) & (a.str.slice(0, 9) == b.str.slice(0, 9))
                same9 |= nine.fill_null(False).to_numpy()
                same6 |= (a.str.slice(0, 6) == b.str.slice(0, 6)).fill_null(False).to_numpy()
        return _levels_from_conditions([same9, same6], ~(any_l & any_r))


@dataclass(frozen=True)
class AddressComparison(Comparison):
    """Best text similarity (normalised Indel, rapidfuzz ``fuzz.ratio``) over the addresses each side gives."""

    columns: tuple[str, ...] = ("hukou_address", "residence_address")
    thresholds: tuple[float, ...] = (0.92, 0.75)

    def gamma(self, pairs: pl.DataFrame) -> np.ndarray:
        n = len(pairs)
        best = np.zeros(n)
        exact = np.zeros(n, dtype=bool)
        any_l = np.zeros(n, dtype=bool)
        any_r = np.zeros(n, dtype=bool)
        for cl in self.columns:
            a = pairs[f"{cl}_l"]
            any_l |= a.is_not_null().to_numpy()
            for cr in self.columns:
                b = pairs[f"{cr}_r"]
                any_r |= b.is_not_null().to_numpy()
                exact |= (a == b).fill_null(False).to_numpy()
        # Similarity only where no address pair is equal already (the bulk of true pairs).
        for cl in self.columns:
            for cr in self.columns:
                sim = _cpdist(pairs[f"{cl}_l"], pairs[f"{cr}_r"], distance.Indel.normalized_similarity, only=~exact)
                best = np.maximum(best, sim)
        conds = [exact] + [best >= t for t in self.thresholds]
        return _levels_from_conditions(conds, ~(any_l & any_r))


DEFAULT_COMPARISONS: tuple[Comparison, ...] = (
    IdNumberComparison(
        "id_number",
        "identity number: same (15/18 forms one), one typo apart, different",
        ("different", "one digit off or two adjacent digits swapped", "same number"),
    ),
    NameComparison(
        "name",
        "name: characters, pinyin, syllables in any order, pinyin Jaro-Winkler",
        (
            "different",
            "same given name, other surname",
            "pinyin Jaro-Winkler >= 0.88",
            "pinyin Jaro-Winkler >= 0.94",
            "same syllables, other order",
            "same pinyin (homophone, other script)",
            "same name",
        ),
        tf_levels=(5, 6),
        tf_column="name_pinyin",
    ),
    BirthDateComparison(
        "birth_date",
        "birth date (the record's, else its id's)",
        ("different", "same year", "two of year/month/day equal", "day and month swapped", "same date"),
    ),
    ExactComparison("sex", "sex (the record's, else its id's)", ("different", "same"), column="sex"),
    RegionComparison(
        "region",
        "any household-register or residence region in common",
        ("different", "same county", "same township or street"),
    ),
    AddressComparison(
        "address",
        "best similarity of household-register and residence addresses",
        ("different", "similarity >= 0.75", "similarity >= 0.92", "same address"),
    ),
    ExactComparison("phone", "phone number", ("different", "same"), column="phone"),
)

# Columns of the prepared records a pair frame needs, each as _l and _r.
PAIR_COLUMNS: tuple[str, ...] = (
    "id_number",
    "id_valid",
    "id_own",
    "id_foreign",
    "name",
    "name_script",
    "name_pinyin",
    "name_pinyin_sorted",
    "pinyin_compact",
    "pinyin_reordered",
    "given_pinyin",
    "surname_pinyin",
    "birth",
    "sex",
    "hukou_region",
    "residence_region",
    "hukou_address",
    "residence_address",
    "phone",
)


def pair_frame(pairs: pl.DataFrame, records: pl.DataFrame) -> pl.DataFrame:
    """Pairs (record_key_l, record_key_r, ...) with each side's fields as ``<col>_l`` / ``<col>_r``."""
    cols = ["record_key", *PAIR_COLUMNS]
    rec = records.select(cols)
    left = rec.rename({c: f"{c}_l" for c in cols})
    right = rec.rename({c: f"{c}_r" for c in cols})
    return pairs.join(left, on="record_key_l", how="left").join(right, on="record_key_r", how="left")


def compare_pairs(pf: pl.DataFrame, comparisons: tuple[Comparison, ...] = DEFAULT_COMPARISONS) -> np.ndarray:
    """Comparison vectors, shape (pairs, comparisons), int8 levels (-1 = a side is empty)."""
    if len(pf) == 0:
        return np.zeros((0, len(comparisons)), dtype=np.int8)
    return np.column_stack([c.gamma(pf) for c in comparisons]).astype(np.int8)


def recordlinkage_compare(comparisons: tuple[Comparison, ...] = DEFAULT_COMPARISONS) -> recordlinkage.Compare:
    """The same comparisons as a ``recordlinkage.Compare`` (one feature per comparison).

    For use inside a recordlinkage pipeline (its indexers, classifiers, evaluation): each
    feature hands recordlinkage's aligned column pairs to the comparison's vectorised
    ``gamma``, so both paths give identical levels. linkage itself calls
    :func:`compare_pairs` directly and skips the pandas MultiIndex round trip, which costs
    more than the comparisons at city scale.
    """
    import recordlinkage
    from recordlinkage.base import BaseCompareFeature

    class _Feature(BaseCompareFeature):
        def __init__(self, comparison: Comparison):
            cols = list(PAIR_COLUMNS)
            super().__init__(cols, cols, label=comparison.name)
            self.comparison = comparison

        def _compute_vectorized(self, *series) -> np.ndarray:
            n = len(PAIR_COLUMNS)
            data = {}
            for i, col in enumerate(PAIR_COLUMNS):
                data[f"{col}_l"] = pl.from_pandas(series[i].reset_index(drop=True))
                data[f"{col}_r"] = pl.from_pandas(series[n + i].reset_index(drop=True))
            return self.comparison.gamma(pl.DataFrame(data))

    compare = recordlinkage.Compare()
    for c in comparisons:
        compare.add(_Feature(c))
    return compare
