"""Standardize stage: raw_records → int_persons_standardized (docs/DESIGN.md section 2).

Grain: one output row per input row, same order. Set-based throughout: polars
expressions over whole columns, and Python only over DISTINCT values (names,
addresses, date strings), joined back on the raw value.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from linkage.addresses import standardize_addresses
from linkage.dates import parse_date_column, standardize_sex
from linkage.fields import RAW_VALUE_COLUMNS, RAW_VALUES_VIEW, RECORD_PROVENANCE_COLUMNS
from linkage.id_numbers import nfkc, standardize_id_numbers
from linkage.names import DATA_DIR, NAME_COLUMNS, standardize_names
from linkage.phones import standardize_phones
from linkage.regions import (
    learn_township_aliases,
    learn_township_codes,
    normalize_region_code,
    preferred_cities,
)

__all__ = [
    "standardize_records", "standardization_metrics", "learn_region_context", "RegionContext",
    "combine_standardization_metrics", "stored_standardized", "RAW_VALUE_COLUMNS", "RAW_VALUES_VIEW",
    "STANDARDIZATION_FLAGS",
    "RAW_FIELDS", "RELATIONS",
]

CARRIED = ("record_key", "source", "department", "source_kind", "record_id", "file", "row_number")
# Carried too when ingest provides them (they help an auditor trace a row to its file).
CARRIED_OPTIONAL = ("file_sha256", "load_batch")

# Per stored row, the standardization metrics' flags (filled, standardized, flagged_invalid,
# derived for each field) as the bits of one integer.
STANDARDIZATION_FLAGS = "standardization_flags"

RAW_FIELDS = (
    "name", "id_number", "sex", "birth_date", "ethnicity", "phone", "hukou_address", "hukou_region",
    "residence_address", "residence_region", "household_id", "relation_to_head", "house_id",
    "employer", "registered_at", "updated_at",
)

# 与户主关系: the words clerks write, and the GB/T 4761-2008 family-relation codes by their first digit.
RELATIONS: dict[str, tuple[str, ...]] = {
    "head": ("户主", "本人", "户主本人", "户长", "HEAD", "SELF", "01", "02"),
    "spouse": ("配偶", "妻", "妻子", "夫", "丈夫", "老婆", "老公", "爱人", "SPOUSE", "WIFE", "HUSBAND"),
    "child": (
        "子", "女", "儿子", "女儿", "长子", "次子", "三子", "四子", "五子", "长女", "次女", "三女", "四女", "五女",
        "独生子", "独生女", "养子", "养女", "继子", "继女", "孩子", "子女", "CHILD", "SON", "DAUGHTER",
    ),
    "child_in_law": ("儿媳", "儿媳妇", "媳妇", "女婿", "CHILD_IN_LAW", "28", "38"),
    "parent": (
        "父亲", "母亲", "父", "母", "父母", "爸爸", "妈妈", "公公", "婆婆", "岳父", "岳母", "继父", "继母",
        "养父", "养母", "PARENT", "FATHER", "MOTHER",
    ),
    "grandchild": ("孙子", "孙女", "外孙", "外孙子", "外孙女", "孙", "曾孙", "曾孙女", "GRANDCHILD"),
    "grandparent": (
        "祖父", "祖母", "外祖父", "外祖母", "爷爷", "奶奶", "外公", "外婆", "姥爷", "姥姥", "祖父母", "GRANDPARENT",
    ),
    "sibling": ("兄", "弟", "姐", "妹", "哥哥", "弟弟", "姐姐", "妹妹", "兄弟", "姐妹", "兄弟姐妹", "SIBLING"),
    "other": (
        "其他", "其它", "侄子", "侄女", "外甥", "外甥女", "伯父", "伯母", "叔父", "叔叔", "婶婶", "姑姑", "舅舅",
        "阿姨", "姨", "嫂子", "弟媳", "姐夫", "妹夫", "保姆", "非亲属", "亲属", "同住", "租户", "租客", "OTHER",
    ),
}
# GB/T 4761 two-digit codes: 1x spouse, 2x son, 3x daughter, 4x grandchild, 5x parent,
# 6x grandparent, 7x sibling, 8x/9x other; 28 女婿 and 38 儿媳 are children-in-law (listed above).
_RELATION_CODE_GROUPS = {"1": "spouse", "2": "child", "3": "child", "4": "grandchild", "5": "parent",
                         "6": "grandparent", "7": "sibling", "8": "other", "9": "other"}


def _relation_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    for group, digit_relation in _RELATION_CODE_GROUPS.items():
        for d in range(10):
            lookup[f"{group}{d}"] = digit_relation
    for relation, words in RELATIONS.items():
        for word in words:
            lookup[word] = relation
    return lookup


def _ethnicity_lookup() -> dict[str, str]:
    lookup: dict[str, str] = {}
    with open(DATA_DIR / "ethnicities.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            name = row["name"]
            lookup[row["code"]] = name
            lookup[str(int(row["code"]))] = name
            lookup[name] = name
            lookup[name.removesuffix("族")] = name  # 汉 → 汉族 (蒙古 → 蒙古族)
    return lookup


def _trimmed(column: str) -> pl.Expr:
    text = pl.col(column).str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def _with_all_raw_columns(raw: pl.DataFrame) -> pl.DataFrame:
    # raw_records always has every canonical column; a frame built by hand for a test may not.
    missing = [c for c in RAW_FIELDS if c not in raw.columns]
    if missing:
        raw = raw.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in missing)
    return raw.with_columns(pl.col(c).cast(pl.String) for c in RAW_FIELDS)


def _region_prefix(code: pl.Expr) -> pl.Expr:
    """The digits a code fixes: 33 for a province (330000), 3306 for a city (330600), all 6 or 9 otherwise."""
    return (
        pl.when(code.str.ends_with("0000") & (code.str.len_chars() == 6)).then(code.str.slice(0, 2))
        .when(code.str.ends_with("00") & (code.str.len_chars() == 6)).then(code.str.slice(0, 4))
        .otherwise(code)
    )


REGION_CONTEXT_COLUMNS = ("hukou_region", "residence_region", "hukou_address", "residence_address")


@dataclass(frozen=True)
class RegionContext:
    """What the whole batch teaches about regions, applied to each row.

    `preferred_cities`: 4-digit city prefixes ranked by how often the batch's own codes
    name them (they break ties between counties of the same name). `learned_townships`:
    `county_code, township_name, township_code, seen, codes_seen` from the rows whose
    extract gives a 9-digit code and whose address names the township.
    `township_aliases`: `township_code, same_as`, the codes of another vintage that the
    extracts pair with the same (county, township name) as the learned code
    (`learn_township_aliases`): a row's `*_township` is the learned code, its `*_region`
    the code as given. Learned once over every row, it lets the records be standardized a
    slice at a time, or only the rows that changed since the night the context was
    learned, with the same result.
    """

    preferred_cities: tuple[str, ...]
    learned_townships: pl.DataFrame
    township_aliases: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema={"township_code": pl.String, "same_as": pl.String})
    )

    @property
    def townships_by_name(self) -> pl.DataFrame:
        # A township name seen in a single county of the batch identifies it even without the county.
        return (
            self.learned_townships.group_by("township_name")
            .agg(pl.col("township_code").first(), pl.len().alias("_n"))
            .filter(pl.col("_n") == 1)
            .select("township_name", pl.col("township_code").alias("township_by_name"))
        )


def _per_distinct(raw: pl.DataFrame, column: str, expr: pl.Expr, name: str) -> pl.Series:
    """`expr` (over `column`) worked out once per distinct value of the column and joined back.

    For the columns with a few dozen values (region codes, sex, ethnicity, relation) a join
    costs a tenth of the string work on every row.
    """
    mapped = raw.select(pl.col(column).unique()).with_columns(expr.alias(name))
    return raw.select(column).join(mapped, on=column, how="left", nulls_equal=True, maintain_order="left").get_column(name)


def _given_codes(raw: pl.DataFrame) -> pl.DataFrame:
    return pl.DataFrame([
        _per_distinct(raw, "hukou_region", normalize_region_code(pl.col("hukou_region")), "hukou_given"),
        _per_distinct(raw, "residence_region", normalize_region_code(pl.col("residence_region")), "residence_given"),
    ])


def _address_sides(raw: pl.DataFrame, given: pl.DataFrame, preferred: Sequence[str]) -> dict[str, pl.DataFrame]:
    """Per side, `address_raw, given` and the parsed address (address, address_region, township_name)."""
    lookup = standardize_addresses(
        pl.concat([raw.get_column("hukou_address"), raw.get_column("residence_address")]).rename("a"),
        list(preferred),
    )
    return {
        side: pl.concat(
            [raw.select(pl.col(f"{side}_address").alias("address_raw")), given.select(pl.col(f"{side}_given").alias("given"))],
            how="horizontal",
        ).join(lookup, on="address_raw", how="left", maintain_order="left")
        for side in ("hukou", "residence")
    }


def learn_region_context(raw: pl.DataFrame) -> RegionContext:
    """The batch's region context from its `REGION_CONTEXT_COLUMNS` (other columns are ignored).

    Only rows that give a 9-digit code can teach a township, so only their addresses are
    parsed here; every row's own address is parsed when it is standardized.
    """
    raw = _with_all_raw_columns(raw.select([c for c in REGION_CONTEXT_COLUMNS if c in raw.columns]))
    given = _given_codes(raw)
    preferred = preferred_cities(pl.concat([given.get_column("hukou_given"), given.get_column("residence_given")]))
    teaching = (given.get_column("hukou_given").str.len_chars() == 9) | (given.get_column("residence_given").str.len_chars() == 9)
    teaching = teaching.fill_null(False)
    raw, given = raw.filter(teaching), given.filter(teaching)
    sides = _address_sides(raw, given, preferred)
    # The batch's own (county, township name) → 9-digit code pairs: rows whose extract gives a
    # township code and whose address names the township. An address whose prefix names another
    # county than the code is a contradiction and teaches nothing.
    pairs = pl.concat(
        [
            frame.filter(
                (pl.col("given").str.len_chars() == 9)
                & pl.col("township_name").is_not_null()
                & (
                    pl.col("address_region").is_null()
                    | pl.col("given").str.starts_with(_region_prefix(pl.col("address_region")))
                )
            ).select(
                pl.col("given").str.slice(0, 6).alias("county_code"),
                "township_name",
                pl.col("given").alias("township_code"),
            )
            for frame in sides.values()
        ]
    )
    learned = learn_township_codes(pairs)
    return RegionContext(tuple(preferred), learned, learn_township_aliases(pairs, learned))


def _regions(raw: pl.DataFrame, context: RegionContext) -> pl.DataFrame:
    """Region and township codes of both addresses; same height and order as `raw`."""
    given = _given_codes(raw)
    sides = _address_sides(raw, given, context.preferred_cities)
    learned = context.learned_townships
    by_name_only = context.townships_by_name
    # A given code of another vintage of a township the batch knows → the learned code.
    aliases = context.township_aliases.select(pl.col("township_code").alias("given"), "same_as")
    out: dict[str, pl.Series] = {}
    for side, frame in sides.items():
        given, from_address = pl.col("given"), pl.col("address_region")
        # The finest of the two 6-digit codes when they agree: a source that gives only its city
        # (330600) and an address naming the county (越城区) is at county level.
        finer_address = from_address.is_not_null() & from_address.str.starts_with(_region_prefix(given)) & (
            from_address != given
        )
        level6 = (
            pl.when(given.is_null()).then(from_address)
            .when(given.str.len_chars() == 9).then(given.str.slice(0, 6))
            .when(finer_address).then(from_address)
            .otherwise(given)
        )
        resolved = (
            frame.with_columns(level6.alias("_level6"), finer_address.fill_null(False).alias("_finer"))
            .with_columns(
                pl.when(pl.col("_level6").str.ends_with("00")).then(None).otherwise(pl.col("_level6")).alias("county_code")
            )
            .join(learned.select("county_code", "township_name", "township_code"), on=["county_code", "township_name"], how="left", maintain_order="left")
            .join(by_name_only, on="township_name", how="left", maintain_order="left")
            .join(aliases, on="given", how="left", maintain_order="left")
            .with_columns(
                pl.when(pl.col("county_code").is_null() & (given.is_null() | (given.str.len_chars() == 6)))
                # A township name seen in one county only: allowed when no county is known, and only
                # inside the city or province a coarse given code names.
                .then(
                    pl.when(pl.col("township_by_name").str.starts_with(pl.coalesce(_region_prefix(pl.col("_level6")), pl.lit(""))))
                    .then(pl.col("township_by_name"))
                    .otherwise(None)
                )
                .otherwise(pl.col("township_code"))
                .alias("learned_code")
            )
        )
        region = (
            pl.when(given.str.len_chars() == 9).then(given)
            .when(pl.col("learned_code").is_not_null()).then(pl.col("learned_code"))
            .otherwise(pl.col("_level6"))
        )
        region_source = (
            pl.when(given.str.len_chars() == 9).then(pl.lit("extract"))
            .when(pl.col("learned_code").is_not_null()).then(pl.lit("learned_township"))
            .when(given.is_not_null() & ~pl.col("_finer")).then(pl.lit("extract"))
            .when(pl.col("_level6").is_not_null()).then(pl.lit("code_table"))
            .otherwise(None)
        )
        # The township: the region's 9-digit code, a given code of another vintage as the
        # learned one (the region keeps the code the extract gave).
        township = (
            pl.when(given.str.len_chars() == 9).then(pl.coalesce(pl.col("same_as"), given))
            .when(pl.col("learned_code").is_not_null()).then(pl.col("learned_code"))
            .otherwise(None)
        )
        result = resolved.select(
            pl.col("address"), region.alias("region"), region_source.alias("region_source"), township.alias("township")
        )
        out[f"{side}_address"] = result.get_column("address")
        out[f"{side}_region"] = result.get_column("region")
        out[f"{side}_township"] = result.get_column("township")
        out[f"{side}_region_source"] = result.get_column("region_source")
    return pl.DataFrame(out)


def standardize_records(
    raw: pl.DataFrame,
    *,
    as_of: date | None = None,
    context: RegionContext | None = None,
    names: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """raw_records → int_persons_standardized: one row per input row, same order.

    `as_of` is the day after which a date is in the future (default: today). `context`:
    the region context learned over the whole batch (`learn_region_context`) when `raw`
    is only a slice of it; learned from `raw` itself when not given. `names`:
    `standardize_names` over the whole batch's names, when `raw` is one slice of many (a
    person's name recurs in every source, so slices share most of their names); names of
    `raw` it lacks are standardized here.
    """
    as_of = as_of or date.today()
    raw = _with_all_raw_columns(raw)
    if context is None:
        context = learn_region_context(raw)
    if names is None:
        names = standardize_names(raw.get_column("name"))
    else:
        unknown = raw.select(pl.col("name").alias("name_raw")).join(names, on="name_raw", how="anti")
        if unknown.height:
            names = pl.concat([names, standardize_names(unknown.get_column("name_raw"))])
    named = raw.select(pl.col("name").alias("name_raw")).join(names, on="name_raw", how="left", maintain_order="left")
    ids = standardize_id_numbers(raw, "id_number", as_of=as_of)
    birth = parse_date_column(raw.get_column("birth_date"), as_of)
    registered = parse_date_column(raw.get_column("registered_at"), as_of)
    updated = parse_date_column(raw.get_column("updated_at"), as_of)
    phones = standardize_phones(raw, "phone")
    regions = _regions(raw, context)
    relation = _relation_lookup()
    ethnicity = _ethnicity_lookup()

    carried = [c for c in CARRIED if c in raw.columns] + [c for c in CARRIED_OPTIONAL if c in raw.columns]
    ethnicity_key = nfkc(pl.col("ethnicity")).str.strip_chars()
    relation_key = nfkc(pl.col("relation_to_head")).str.strip_chars().str.to_uppercase()
    sex = _per_distinct(raw, "sex", standardize_sex(pl.col("sex")), "_sex")
    ethnicity_standard = _per_distinct(
        raw,
        "ethnicity",
        pl.when(ethnicity_key == "").then(None).otherwise(
            ethnicity_key.replace_strict(list(ethnicity), list(ethnicity.values()), default=ethnicity_key)
        ),
        "_ethnicity",
    )
    relation_standard = _per_distinct(
        raw,
        "relation_to_head",
        relation_key.replace_strict(list(relation), list(relation.values()), default=None, return_dtype=pl.String),
        "_relation",
    )
    base = raw.select(
        *carried,
        pl.col("name").alias("name_raw"),
        pl.lit(sex).alias("sex"),
        pl.col("sex").alias("sex_raw"),
        pl.lit(ethnicity_standard).alias("ethnicity"),
        pl.col("ethnicity").alias("ethnicity_raw"),
        _trimmed("household_id").alias("household_id"),
        pl.lit(relation_standard).alias("relation_to_head"),
        pl.col("relation_to_head").alias("relation_to_head_raw"),
        _trimmed("house_id").alias("house_id"),
        _trimmed("employer").alias("employer"),
        pl.col(["id_number", "birth_date", "phone", "hukou_address", "hukou_region", "residence_address", "residence_region", "registered_at", "updated_at"]).name.suffix("_raw"),
    )
    wide = pl.concat(
        [
            base,
            named.select(*NAME_COLUMNS),
            ids,
            birth.rename({"date": "birth_date", "flag": "birth_date_flag"}),
            registered.select(pl.col("date").alias("registered_at")),
            updated.select(pl.col("date").alias("updated_at")),
            phones,
            regions,
        ],
        how="horizontal",
    )
    wide = wide.with_columns(
        (pl.col("birth_date") != pl.col("id_birth_date")).alias("birth_date_conflicts_id"),
        (pl.col("sex") != pl.col("id_sex")).alias("sex_conflicts_id"),
    )
    return wide.select(
        *carried,
        "name", "name_raw", "name_script", "surname", "given_name", "name_pinyin", "surname_pinyin",
        "name_pinyin_sorted", "name_initials",
        "id_number", "id_number_raw", "id_type", "id_valid", "id_upgraded", "id_birth_date", "id_sex", "id_region",
        "birth_date", "birth_date_raw", "birth_date_flag", "birth_date_conflicts_id",
        "sex", "sex_raw", "sex_conflicts_id",
        "ethnicity", "ethnicity_raw",
        "phone", "phone_raw", "phone_type",
        "hukou_address", "hukou_address_raw", "residence_address", "residence_address_raw",
        "hukou_region", "hukou_region_raw", "hukou_region_source", "hukou_township",
        "residence_region", "residence_region_raw", "residence_region_source", "residence_township",
        "household_id", "relation_to_head", "relation_to_head_raw", "house_id", "employer",
        "registered_at", "registered_at_raw", "updated_at", "updated_at_raw",
    )


# Per field: (raw column, standard value as text, expression that is true for a flagged row).
def _metric_specs() -> dict[str, tuple[str, pl.Expr, pl.Expr]]:
    def as_text(column: str) -> pl.Expr:
        return pl.col(column).cast(pl.String)

    def lost(column: str, raw: str) -> pl.Expr:
        # Given a value, standardization could not use it.
        return pl.col(raw).is_not_null() & pl.col(column).is_null()

    return {
        "name": ("name_raw", as_text("name"), lost("name", "name_raw")),
        "id_number": ("id_number_raw", as_text("id_number"), pl.col("id_valid") == False),  # noqa: E712
        "sex": ("sex_raw", as_text("sex"), lost("sex", "sex_raw") | pl.col("sex_conflicts_id").fill_null(False)),
        "birth_date": (
            "birth_date_raw",
            as_text("birth_date"),
            pl.col("birth_date_flag").is_not_null() | pl.col("birth_date_conflicts_id").fill_null(False),
        ),
        "ethnicity": ("ethnicity_raw", as_text("ethnicity"), pl.col("ethnicity").is_not_null() & ~pl.col("ethnicity").is_in(sorted(set(_ethnicity_lookup().values())))),
        "phone": ("phone_raw", as_text("phone"), lost("phone", "phone_raw")),
        "hukou_address": ("hukou_address_raw", as_text("hukou_address"), lost("hukou_address", "hukou_address_raw")),
        "hukou_region": ("hukou_region_raw", as_text("hukou_region"), pl.col("hukou_region_raw").is_not_null() & normalize_region_code(pl.col("hukou_region_raw")).is_null()),
        "residence_address": ("residence_address_raw", as_text("residence_address"), lost("residence_address", "residence_address_raw")),
        "residence_region": ("residence_region_raw", as_text("residence_region"), pl.col("residence_region_raw").is_not_null() & normalize_region_code(pl.col("residence_region_raw")).is_null()),
        "relation_to_head": ("relation_to_head_raw", as_text("relation_to_head"), lost("relation_to_head", "relation_to_head_raw")),
        "registered_at": ("registered_at_raw", as_text("registered_at"), lost("registered_at", "registered_at_raw")),
        "updated_at": ("updated_at_raw", as_text("updated_at"), lost("updated_at", "updated_at_raw")),
    }


_METRIC_COUNTS = ("filled", "standardized", "flagged_invalid", "derived")


def _flag_bit(field_index: int, count_index: int) -> int:
    return 1 << (len(_METRIC_COUNTS) * field_index + count_index)


def _standardization_flags() -> pl.Expr:
    """Each row's metric flags as the bits of one integer (13 fields x 4 counts = 52 bits)."""
    bits = []
    for i, (raw_column, standard, flagged) in enumerate(_metric_specs().values()):
        given = pl.col(raw_column).is_not_null()
        row_flags = (
            given,
            (given & (standard.is_null() | (standard != pl.col(raw_column)))).fill_null(False),
            flagged.fill_null(False),
            ~given & standard.is_not_null(),
        )
        bits += [flag.cast(pl.UInt64) * _flag_bit(i, j) for j, flag in enumerate(row_flags)]
    return pl.sum_horizontal(bits).cast(pl.UInt64).alias(STANDARDIZATION_FLAGS)


def stored_standardized(std: pl.DataFrame) -> pl.DataFrame:
    """`standardize_records`' output as int_persons_standardized stores it.

    The raw copies (RAW_VALUE_COLUMNS) and the row's provenance (RECORD_PROVENANCE_COLUMNS)
    are left out: raw_records holds the same values under the same record_key (the
    int_persons_raw_values view shows them), and writing them again was a quarter of the
    table (1M city: 2-4 s of the stage). What the metrics need of the raw copies is kept as
    STANDARDIZATION_FLAGS, so a later night can take a row's figures out again after
    raw_records no longer holds it.
    """
    left_out = [*RAW_VALUE_COLUMNS, *RECORD_PROVENANCE_COLUMNS]
    return std.with_columns(_standardization_flags()).drop(left_out, strict=False)


def standardization_metrics(std: pl.DataFrame) -> pl.DataFrame:
    """One row per (source, field): `source, field, filled, standardized, flagged_invalid, derived`.

    filled: the raw value was given. standardized: given, and the standard value differs
    from it (including a value that became NULL). flagged_invalid: given but unusable or
    contradicting the id (bad check character, 2月30日, a placeholder name, a region cell
    that is no code). derived: not given, but standardization supplied it (a region read
    from the address).
    """
    specs = _metric_specs()
    counts = _METRIC_COUNTS
    # `std` is either standardize_records' output (raw copies present) or the stored table's
    # rows (STANDARDIZATION_FLAGS present); the figures come from the flag bits either way.
    flag_bits = pl.col(STANDARDIZATION_FLAGS) if STANDARDIZATION_FLAGS in std.columns else _standardization_flags()
    flags = [
        ((flag_bits & _flag_bit(i, j)) != 0).alias(f"{field}\t{count}")
        for i, field in enumerate(specs)
        for j, count in enumerate(counts)
    ]
    # Row flags as plain vectorised columns first (expressions inside a group_by run per group),
    # then one sum per source, reshaped to one row per (source, field).
    wide = std.select("source", *flags).group_by("source").agg(pl.all().sum().cast(pl.Int64))
    long = wide.unpivot(index="source", variable_name="_key", value_name="_n").with_columns(
        pl.col("_key").str.split_exact("\t", 1).struct.rename_fields(["field", "_count"]).alias("_s")
    ).unnest("_s")
    order = {f: i for i, f in enumerate(specs)}
    return (
        long.pivot(on="_count", index=["source", "field"], values="_n")
        .with_columns(pl.col("field").replace_strict(order, return_dtype=pl.Int32).alias("_o"))
        .sort(["source", "_o"])
        .select("source", "field", *[pl.col(c).cast(pl.Int64) for c in counts])
    ) if wide.height else pl.DataFrame(schema={"source": pl.String, "field": pl.String, **{c: pl.Int64 for c in counts}})


def combine_standardization_metrics(
    *parts: pl.DataFrame, minus: Sequence[pl.DataFrame] = ()
) -> pl.DataFrame:
    """The metrics of a union of record sets from the metrics of each (and less those of `minus`).

    Every figure is a count, so the metrics of slices add up to those of the whole, and a
    night that reuses most of last night's rows takes last night's figures, less the rows
    that left, plus the rows that came.
    """
    counts = ["filled", "standardized", "flagged_invalid", "derived"]
    signed = [p for p in parts if p.height] + [
        p.with_columns(-pl.col(c) for c in counts) for p in minus if p.height
    ]
    if not signed:
        return pl.DataFrame(schema={"source": pl.String, "field": pl.String, **{c: pl.Int64 for c in counts}})
    order = {f: i for i, f in enumerate(_metric_specs())}
    return (
        pl.concat(signed)
        .group_by("source", "field")
        .agg(pl.col(c).sum().cast(pl.Int64) for c in counts)
        .with_columns(pl.col("field").replace_strict(order, return_dtype=pl.Int32).alias("_o"))
        .sort(["source", "_o"])
        .select("source", "field", *counts)
    )
