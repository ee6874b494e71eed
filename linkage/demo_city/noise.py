"""The errors real department extracts carry, applied to small subsets of rows.

Each function takes the true values of the chosen rows and returns what a clerk,
an agent or an old system would have written. Python loops here only ever run over
the few percent of rows a noise applies to.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import polars as pl
from pypinyin import Style, lazy_pinyin

from linkage.demo_city import names_data as nd

TAGS: tuple[str, ...] = (
    "noisy_id", "id15", "traditional_name", "homophone_name", "typo_name", "romanized_name", "twin",
    "shared_parent_id", "missing_id", "date_format", "duplicate_in_source", "popular_name",
)
TAG_BIT: dict[str, int] = {t: 1 << i for i, t in enumerate(TAGS)}


def tag_lists(bits: pl.Series) -> pl.Series:
    """Bit masks → list[str] of tag names (the truth's `hard_cases`)."""
    exprs = [pl.when((pl.col("b") & TAG_BIT[t]) > 0).then(pl.lit(t)) for t in TAGS]
    return (
        pl.DataFrame({"b": bits.cast(pl.Int64)})
        .select(pl.concat_list(exprs).list.drop_nulls().alias("hard_cases"))
        .to_series()
    )


def noisy_ids(ids: list[str], rng: np.random.Generator) -> list[str]:
    """One digit mistyped, or two neighbouring digits swapped (the check character then fails)."""
    out = []
    for s in ids:
        chars = list(s)
        if rng.random() < 0.5:
            # swap two different neighbouring digits among the first 17
            cands = [i for i in range(16) if chars[i] != chars[i + 1]]
            i = cands[int(rng.integers(len(cands)))]
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:
            # birth-date and sequence digits are where keying errors land most
            i = int(rng.integers(6, 17))
            d = int(chars[i])
            chars[i] = str((d + int(rng.integers(1, 10))) % 10)
        out.append("".join(chars))
    return out


def id15(ids: pl.Series) -> pl.Series:
    """The 15-digit form of an 18-digit id issued before 1999: no century, no check character."""
    return ids.str.slice(0, 6) + ids.str.slice(8, 9)


@lru_cache(maxsize=1)
def _s2t():
    import opencc

    return opencc.OpenCC("s2t")


def traditional(names: list[str]) -> list[str | None]:
    """Traditional-character form, or None when the name reads the same in both scripts."""
    conv = _s2t()
    out: list[str | None] = []
    for n in names:
        t = conv.convert(n)
        out.append(t if t != n else None)
    return out


@lru_cache(maxsize=1)
def _homophones() -> dict[str, str]:
    alt: dict[str, str] = {}
    for group in nd.HOMOPHONE_GROUPS:
        for ch in group:
            alt[ch] = group.replace(ch, "")
    return alt


def _given_start(name: str, surname: str | None) -> int:
    return len(surname) if surname and name.startswith(surname) else 1


def homophones(names: list[str], surnames: list[str | None], rng: np.random.Generator) -> list[str | None]:
    """One given-name character swapped for one that sounds the same (伟→玮), or None."""
    table = _homophones()
    out: list[str | None] = []
    for name, sur in zip(names, surnames, strict=True):
        start = _given_start(name, sur)
        pos = [i for i in range(start, len(name)) if name[i] in table]
        if not pos or "·" in name:
            out.append(None)
            continue
        i = pos[int(rng.integers(len(pos)))]
        others = table[name[i]]
        choice = others[int(rng.integers(len(others)))]
        out.append(name[:i] + choice + name[i + 1:])
    return out


def typos(names: list[str], surnames: list[str | None], rng: np.random.Generator) -> list[str | None]:
    """A look-alike character (王→玉), a dropped or swapped given-name character, or None."""
    out: list[str | None] = []
    for name, sur in zip(names, surnames, strict=True):
        if "·" in name:
            out.append(None)
            continue
        start = _given_start(name, sur)
        look = [i for i in range(len(name)) if name[i] in nd.LOOKALIKES]
        r = rng.random()
        if look and r < 0.6:
            i = look[int(rng.integers(len(look)))]
            out.append(name[:i] + nd.LOOKALIKES[name[i]] + name[i + 1:])
        elif len(name) - start == 2 and r < 0.8 and name[start] != name[start + 1]:
            out.append(name[:start] + name[start + 1] + name[start])
        elif len(name) - start == 2:
            drop = start + int(rng.integers(2))
            out.append(name[:drop] + name[drop + 1:])
        else:
            pool = nd.MALE_CHARS + nd.FEMALE_CHARS
            i = len(name) - 1
            ch = pool[int(rng.integers(len(pool)))]
            out.append(name[:i] + ch + name[i + 1:] if ch != name[i] else None)
    return out


def romanized(surnames: list[str | None], givens: list[str], rng: np.random.Generator) -> list[tuple[str, str]]:
    """(first column, second column) as an agent types a name in Latin letters.

    Mostly upper-case surname first (ZHANG, WEI); a third in Western order with the
    given name in the surname column (Wei, Zhang), as foreign-trained agents do.
    """
    out = []
    for sur, given in zip(surnames, givens, strict=True):
        s = nd.SURNAME_PINYIN.get(sur or "") or "".join(lazy_pinyin(sur or "", style=Style.NORMAL))
        g = "".join(lazy_pinyin(given, style=Style.NORMAL))
        r = rng.random()
        if r < 0.55:
            out.append((s.upper(), g.upper()))
        elif r < 0.75:
            out.append((s.capitalize(), g.capitalize()))
        else:
            out.append((g.capitalize(), s.capitalize()))
    return out


DATE_FORMATS = ("%Y-%m-%d", "%Y/%-m/%-d", "%Y%m%d", "%Y年%-m月%-d日", "%Y.%m.%d")


def format_dates(dates: pl.Series, fmt: np.ndarray) -> pl.Series:
    """Dates written with the format index of each row (see DATE_FORMATS)."""
    d = pl.DataFrame({"d": dates, "f": fmt})
    y = pl.col("d").dt.year().cast(pl.String)
    m = pl.col("d").dt.month().cast(pl.String)
    dd = pl.col("d").dt.day().cast(pl.String)
    m2 = m.str.zfill(2)
    d2 = dd.str.zfill(2)
    expr = (
        pl.when(pl.col("f") == 0).then(pl.concat_str([y, m2, d2], separator="-"))
        .when(pl.col("f") == 1).then(pl.concat_str([y, m, dd], separator="/"))
        .when(pl.col("f") == 2).then(pl.concat_str([y, m2, d2]))
        .when(pl.col("f") == 3).then(pl.concat_str([y, pl.lit("年"), m, pl.lit("月"), dd, pl.lit("日")]))
        .otherwise(pl.concat_str([y, m2, d2], separator="."))
    )
    return d.select(expr.alias("out")).to_series()


def format_phones(phones: pl.Series, style: np.ndarray) -> pl.Series:
    """Mobile numbers as people write them: plain, dashed, spaced, +86."""
    d = pl.DataFrame({"p": phones, "s": style})
    p = pl.col("p")
    expr = (
        pl.when(pl.col("s") == 1).then(pl.concat_str([p.str.slice(0, 3), p.str.slice(3, 4), p.str.slice(7, 4)], separator="-"))
        .when(pl.col("s") == 2).then(pl.concat_str([p.str.slice(0, 3), p.str.slice(3, 4), p.str.slice(7, 4)], separator=" "))
        .when(pl.col("s") == 3).then(pl.lit("+86 ") + p)
        .when(pl.col("s") == 4).then(pl.lit("+86-") + p)
        .otherwise(p)
    )
    return d.select(expr.alias("out")).to_series()
