"""Person names: one written form, surname split, pinyin that lets homophones and romanizations meet.

`standardize_names` works over the DISTINCT raw names of a batch (a city of a million
people has a few hundred thousand distinct names) and is joined back by the caller.
OpenCC runs once over all distinct names joined by newlines, and pinyin is looked up
per distinct character, so the per-name Python work is a few dictionary lookups.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import opencc
import polars as pl
from pypinyin import Style, lazy_pinyin

from linkage.fields import NAME_PLACEHOLDERS

DATA_DIR = Path(__file__).parent / "data"

MIDDLE_DOT = "·"
# Every dot clerks and input methods use between the parts of a transliterated minority name
# (买买提·艾力): Latin-1 middle dot, bullet, katakana and half-width katakana middle dots,
# hyphenation point, bullet operator, dot operator, full stop and ideographic full stop, dashes.
_DOT_LIKE = "·•・･‧∙⋅.。．﹒-－—–"
_ZERO_WIDTH = "\u200b\u200c\u200d\u2060\ufeff\u00ad"

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_HAN_RE = re.compile(f"[{_HAN}]")
_LATIN_RE = re.compile(r"[A-Za-z]")

# Words that fill a name cell when the clerk had no name (or was testing the form); ingest's
# no_name_or_id rule counts the same words as empty.
PLACEHOLDERS = NAME_PLACEHOLDERS
_PLACEHOLDER_PARTS = ("测试", "某某")

NAME_COLUMNS = (
    "name",
    "name_script",
    "surname",
    "given_name",
    "name_pinyin",
    "surname_pinyin",
    "name_pinyin_sorted",
    "name_initials",
)


@dataclass(frozen=True)
class NameParts:
    name: str | None
    name_script: str | None
    surname: str | None = None
    given_name: str | None = None
    name_pinyin: str | None = None
    surname_pinyin: str | None = None
    name_pinyin_sorted: str | None = None
    name_initials: str | None = None


@cache
def _surname_table() -> tuple[dict[str, str], dict[str, str]]:
    """(compound surname → pinyin syllables, single surname → its surname reading)."""
    compound: dict[str, str] = {}
    single: dict[str, str] = {}
    with open(DATA_DIR / "surnames.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            (compound if row["kind"] == "compound" else single)[row["surname"]] = row["pinyin"]
    return compound, single


@cache
def pinyin_syllables() -> frozenset[str]:
    return frozenset((DATA_DIR / "pinyin_syllables.txt").read_text(encoding="utf-8").split())


@cache
def _opencc() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


_char_pinyin: dict[str, str] = {}


def _pinyin_of_chars(chars: set[str]) -> None:
    missing = [c for c in chars if c not in _char_pinyin]
    for c, p in zip(missing, lazy_pinyin(missing, style=Style.NORMAL, errors=lambda x: [""] * len(x)), strict=True):
        _char_pinyin[c] = p


def clean_name_text(raw: str) -> str:
    """NFKC (full-width → half-width), no zero-width characters, dots unified, no spaces inside a Han name."""
    text = unicodedata.normalize("NFKC", raw)
    text = text.translate({ord(c): None for c in _ZERO_WIDTH}).strip()
    if _HAN_RE.search(text):
        text = re.sub(r"\s+", "", text)
        text = re.sub(f"[{re.escape(_DOT_LIKE)}]+", MIDDLE_DOT, text).strip(MIDDLE_DOT)
    else:
        text = re.sub(r"\s+", " ", text)
    return text


def is_placeholder(text: str) -> bool:
    if not text:
        return True
    if text.upper() in PLACEHOLDERS:
        return True
    if any(part in text for part in _PLACEHOLDER_PARTS):
        return True
    # Nothing that could be a name: lone punctuation, digits only.
    return not (_HAN_RE.search(text) or _LATIN_RE.search(text))


def split_pinyin(token: str) -> list[str] | None:
    """Split a run-together romanization into pinyin syllables (`zhangwei` → zhang, wei), or None.

    Fewest syllables wins; among equal counts the split with no syllable starting with a
    vowel after the first wins, because pinyin writes an apostrophe there (xi'an), so
    `fangan` reads fan-gan, not fang-an.
    """
    split = _split_pinyin(token.lower().replace("ü", "v"))
    return list(split) if split is not None else None


@cache
def _split_pinyin(token: str) -> tuple[str, ...] | None:
    # Cached: romanized names repeat the same few hundred surnames and given-name syllables.
    syllables = pinyin_syllables()
    n = len(token)
    best: list[tuple[int, int, list[str]] | None] = [None] * (n + 1)
    best[0] = (0, 0, [])
    for i in range(n):
        if best[i] is None:
            continue
        count, vowel_starts, parts = best[i]  # type: ignore[misc]
        for j in range(i + 1, min(n, i + 6) + 1):
            piece = token[i:j]
            if piece not in syllables:
                continue
            cost = (count + 1, vowel_starts + (1 if i > 0 and piece[0] in "aoe" else 0), [*parts, piece])
            current = best[j]
            if current is None or cost[:2] < current[:2]:
                best[j] = cost
    return tuple(best[n][2]) if best[n] is not None else None


# Romanizations of ü in passports (LYU, NYU) and in older documents (LU:) all mean pypinyin's v.
_UMLAUT_SPELLINGS = {"lyu": "lv", "nyu": "nv", "lyue": "lve", "nyue": "nve"}


def _latin_name(text: str) -> NameParts:
    surname_part: str | None = None
    tokens_raw: list[str]
    if "," in text:
        # "ZHANG, Wei": the part before the comma is the surname, as passports and libraries write it.
        before, _, after = text.partition(",")
        surname_part = before
        tokens_raw = re.split(r"[\s\-_'’.,]+", before) + re.split(r"[\s\-_'’.,]+", after)
    else:
        tokens_raw = re.split(r"[\s\-_'’.]+", text)
        words = [t for t in text.split() if t]
        # "Wei ZHANG": one word in capitals among capitalized ones is the surname.
        caps = [w for w in words if len(w) > 1 and w.isupper()]
        if len(words) > 1 and len(caps) == 1 and all(w.isupper() or w[:1].isupper() for w in words):
            surname_part = caps[0]
    tokens_raw = [t for t in tokens_raw if t]
    if not tokens_raw:
        return NameParts(None, None)
    syllables: list[str] = []
    shown: list[str] = []  # the name keeps the spelling as written (LYU), the pinyin compares (lv)
    for token in tokens_raw:
        lowered = token.lower()
        if lowered in _UMLAUT_SPELLINGS:
            syllables.append(_UMLAUT_SPELLINGS[lowered])
            shown.append(lowered)
            continue
        split = split_pinyin(lowered) if lowered.isalpha() else None
        syllables.extend(split if split else [lowered])
        shown.extend(split if split else [lowered])
    surname_pinyin = None
    if surname_part is not None:
        parts: list[str] = []
        for token in re.split(r"[\s\-_'’.]+", surname_part.strip()):
            if token:
                lowered = _UMLAUT_SPELLINGS.get(token.lower(), token.lower())
                parts.extend(split_pinyin(lowered) or [lowered])
        surname_pinyin = "".join(parts) or None
    return NameParts(
        name=" ".join(s.upper() for s in shown),
        name_script="latin",
        name_pinyin=" ".join(syllables),
        surname_pinyin=surname_pinyin,
        name_pinyin_sorted=" ".join(sorted(syllables)),
        name_initials="".join(s[0] for s in syllables),
    )


def _han_name(text: str) -> NameParts:
    compound, single = _surname_table()
    if MIDDLE_DOT in text:
        # Transliterated minority names (买买提·艾力) have no surname in the Han sense.
        surname = given = None
        surname_syllables: list[str] = []
        body = text.replace(MIDDLE_DOT, "")
    else:
        # A compound surname needs at least one given-name character after it: 司马 alone is 司 + 马.
        if len(text) >= 3 and text[:2] in compound:
            surname, given = text[:2], text[2:]
            surname_syllables = compound[surname].split()
        else:
            surname, given = text[:1], text[1:] or None
            surname_syllables = [single.get(surname) or _char_pinyin.get(surname) or ""]
        body = given or ""
    given_syllables = [_char_pinyin.get(c, "") for c in body]
    syllables = [s for s in [*surname_syllables, *given_syllables] if s]
    return NameParts(
        name=text,
        name_script="han",
        surname=surname,
        given_name=given,
        name_pinyin=" ".join(syllables) or None,
        surname_pinyin="".join(surname_syllables) or None,
        name_pinyin_sorted=" ".join(sorted(syllables)) or None,
        name_initials="".join(s[0] for s in syllables) or None,
    )


def _from_simplified(text: str) -> NameParts:
    if is_placeholder(text):
        return NameParts(None, None)
    if _HAN_RE.search(text):
        # Stray Latin letters or digits inside a Han name are typing noise, not part of the name.
        text = "".join(c for c in text if _HAN_RE.match(c) or c == MIDDLE_DOT).strip(MIDDLE_DOT)
        if is_placeholder(text):
            return NameParts(None, None)
        return _han_name(text)
    return _latin_name(text)


def standardize_name(raw: str | None) -> NameParts:
    """Standardize one name (for tests and one-off use; batches go through `standardize_names`)."""
    if raw is None:
        return NameParts(None, None)
    text = clean_name_text(raw)
    if _HAN_RE.search(text):
        text = _opencc().convert(text)
        _pinyin_of_chars(set(text))
    return _from_simplified(text)


def standardize_names(raw_names: pl.Series) -> pl.DataFrame:
    """Standardize the DISTINCT values of `raw_names`.

    Returns one row per distinct non-null raw name: `name_raw` and the columns of
    NAME_COLUMNS; join it back on `name_raw`. Han names go through polars expressions
    (pinyin looked up per distinct character and joined); only romanized names, a small
    share, are split into syllables in Python. Gives the same result as `standardize_name`.
    """
    compound, single = _surname_table()
    frame = pl.DataFrame({"name_raw": raw_names.drop_nulls().unique()}, schema={"name_raw": pl.String})
    text = (
        pl.col("name_raw").str.normalize("NFKC").str.replace_all(f"[{_ZERO_WIDTH}]", "").str.strip_chars()
    )
    frame = frame.with_columns(text.alias("_t")).with_columns(
        pl.col("_t").str.contains(f"[{_HAN}]").alias("_han")
    )
    han = frame.filter(pl.col("_han")).with_columns(
        pl.col("_t")
        .str.replace_all(r"\s+", "")
        .str.replace_all(f"[{re.escape(_DOT_LIKE)}]+", MIDDLE_DOT)
        .str.strip_chars(MIDDLE_DOT)
    )
    latin = frame.filter(~pl.col("_han")).with_columns(pl.col("_t").str.replace_all(r"\s+", " "))
    # One OpenCC call over every Han name at once: its per-call overhead dominates for short strings.
    texts = han.get_column("_t").to_list()
    converted = _opencc().convert("\n".join(texts)).split("\n") if texts else []
    if len(converted) != len(texts):  # cannot happen after whitespace removal; kept as a guard
        converted = [_opencc().convert(t) for t in texts]
    han = han.with_columns(
        pl.Series("_t", converted, dtype=pl.String)
        # Stray Latin letters or digits inside a Han name are typing noise, not part of the name.
        .str.replace_all(f"[^{_HAN}{MIDDLE_DOT}]", "")
        .str.strip_chars(MIDDLE_DOT)
    )
    placeholder = (
        pl.col("_t").str.to_uppercase().is_in(sorted(PLACEHOLDERS))
        | pl.col("_t").str.contains("|".join(_PLACEHOLDER_PARTS))
        | ~pl.col("_t").str.contains(f"[{_HAN}A-Za-z]")
    )
    han_rows = han.filter(~placeholder)
    out = [_han_names(han_rows, compound, single)]
    latin_rows = latin.filter(~placeholder)
    if latin_rows.height:
        parts = [_latin_name(t) for t in latin_rows.get_column("_t").to_list()]
        out.append(
            pl.DataFrame(
                {"name_raw": latin_rows.get_column("name_raw"), **{c: [getattr(p, c) for p in parts] for c in NAME_COLUMNS}},
                schema={"name_raw": pl.String, **{c: pl.String for c in NAME_COLUMNS}},
            )
        )
    missing = pl.concat([han.filter(placeholder), latin.filter(placeholder)]).select("name_raw")
    out.append(missing.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in NAME_COLUMNS))
    return pl.concat([o.select("name_raw", *NAME_COLUMNS) for o in out])


def _han_names(han: pl.DataFrame, compound: dict[str, str], single: dict[str, str]) -> pl.DataFrame:
    if han.height == 0:
        return pl.DataFrame(schema={"name_raw": pl.String, **{c: pl.String for c in NAME_COLUMNS}})
    chars = [c for c in han.select(pl.col("_t").str.split("").explode().unique()).to_series().to_list() if c]
    _pinyin_of_chars(set(chars))
    # Only this batch's characters: a shorter pattern list for replace_many below.
    char_table = pl.DataFrame(
        {"_c": chars, "_p": [_char_pinyin[c] for c in chars]}, schema={"_c": pl.String, "_p": pl.String}
    )
    dotted = pl.col("_t").str.contains(MIDDLE_DOT, literal=True)
    first2 = pl.col("_t").str.slice(0, 2)
    surname = (
        pl.when(dotted)
        .then(None)
        # A compound surname needs at least one given-name character after it: 司马 alone is 司 + 马.
        .when((pl.col("_t").str.len_chars() >= 3) & first2.is_in(list(compound)))
        .then(first2)
        .otherwise(pl.col("_t").str.slice(0, 1))
    )
    han = han.with_row_index("_i").with_columns(surname.alias("surname"))
    han = han.with_columns(
        pl.when(dotted)
        .then(pl.col("_t").str.replace_all(MIDDLE_DOT, "", literal=True))
        .otherwise(pl.col("_t").str.slice(pl.col("surname").str.len_chars()))
        .alias("_body"),
        pl.when(dotted)
        .then(None)
        .otherwise(pl.col("_t").str.slice(pl.col("surname").str.len_chars()))
        .alias("given_name"),
    ).with_columns(pl.when(pl.col("given_name") == "").then(None).otherwise(pl.col("given_name")).alias("given_name"))
    # Every character → "syllable " in one Aho-Corasick pass over the column (replace_many).
    readings = [f"{p} " if p else "" for p in char_table.get_column("_p").to_list()]
    given_py = pl.col("_body").str.replace_many(char_table.get_column("_c").to_list(), readings).str.strip_chars()
    han = han.with_columns(pl.when(given_py == "").then(None).otherwise(given_py).alias("_given_py"))
    surname_readings = {**single, **compound}
    han = (
        han.join(char_table.rename({"_c": "surname", "_p": "_surname_char_py"}), on="surname", how="left")
        .with_columns(
            pl.col("surname")
            .replace_strict(list(surname_readings), list(surname_readings.values()), default=pl.col("_surname_char_py"))
            .alias("_surname_py")
        )
        .with_columns(pl.when(pl.col("_surname_py") == "").then(None).otherwise(pl.col("_surname_py")).alias("_surname_py"))
    )
    pinyin = pl.concat_str([pl.col("_surname_py"), pl.col("_given_py")], separator=" ", ignore_nulls=True)
    han = han.with_columns(pl.when(pinyin == "").then(None).otherwise(pinyin).alias("name_pinyin"))
    syllables = pl.col("name_pinyin").str.split(" ")
    return han.sort("_i").select(
        "name_raw",
        pl.col("_t").alias("name"),
        pl.lit("han").alias("name_script"),
        "surname",
        "given_name",
        "name_pinyin",
        pl.col("_surname_py").str.replace_all(" ", "", literal=True).alias("surname_pinyin"),
        syllables.list.sort().list.join(" ").alias("name_pinyin_sorted"),
        syllables.list.eval(pl.element().str.slice(0, 1)).list.join("").alias("name_initials"),
    )
