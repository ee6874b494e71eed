"""Share rates, overlap, duplicate rates, 人户一致率, 流动人口登记率 and field completeness.

Grain: ``share_rates`` one row per source; ``overlap`` one row per ordered pair of
different sources; ``metrics`` the run-level figures of DESIGN.md section 5. Every
run-level rate is ``{numerator, denominator, value}``, ``value`` null when the
denominator is 0; per-source rates are plain numbers next to their counts, as
DESIGN.md section 5 shows them.

Definitions, chosen to be recomputable by an auditor from the published files:

* shared person of a source: a person that at least one other source also holds;
  ``share_rate`` = shared_persons / persons. Overall: persons held by two or more
  sources / all persons.
* duplicate records of a source: its records beyond the first for one person.
* 人户一致率: persons in the household register whose registered township (any township
  the register places them in) equals the township of their freshest residence evidence
  (same rule as ``hukou_residence_split``, without the half-year wait), out of persons for
  whom both are known.
* 流动人口 (floating person): a person with no household-register record whose hukou
  region, as any source states it, lies outside the city; when no source states it, the
  region of their resident id (the county that first registered them) stands in. The city is the set of
  prefecture codes (first 4 digits) of the regions in the ``hukou`` sources: a register
  extract names the city's own counties and townships. 流动人口登记率: floating persons
  with a ``residence`` registration, out of floating persons.
* field completeness (人不漏项): share of a source's records with the field filled
  (standardized value present, so placeholders such as 不详 count as empty), for the
  fields the source maps (given, or else those filled on at least one of its records).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import polars as pl

from linkage.fields import PERSON_FIELDS, RAW_VALUES_VIEW
from linkage.households import (
    FINDING_KINDS,
    current_residence,
    person_records,
    person_records_table,
    registered_hukou,
    residence_evidence,
)
from linkage.sql import raw_values_join

COMPLETENESS_FIELDS: tuple[str, ...] = PERSON_FIELDS

SHARE_RATE_COLUMNS: tuple[str, ...] = ("source", "records", "persons", "shared_persons", "share_rate")


@dataclass(frozen=True)
class Rates:
    share_rates: pl.DataFrame
    overlap: pl.DataFrame
    metrics: dict = field(default_factory=dict)


def rate(numerator: int, denominator: int) -> dict[str, int | float | None]:
    """A rate as published: value null when there is nothing to divide by."""
    value = round(numerator / denominator, 6) if denominator else None
    return {"numerator": int(numerator), "denominator": int(denominator), "value": value}


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 6) if denominator else None


def _sources(std: pl.DataFrame) -> pl.DataFrame:
    """source, department, kind in first-seen order (the sources file's order)."""
    frame = std.select(
        "source",
        (pl.col("department") if "department" in std.columns else pl.col("source")).alias("department"),
        (pl.col("source_kind") if "source_kind" in std.columns else pl.lit("generic")).alias("kind"),
    )
    return frame.unique(subset=["source"], keep="first", maintain_order=True)


def _share_rates(records: pl.DataFrame, sources: pl.DataFrame) -> pl.DataFrame:
    linked = records.filter(pl.col("person_id").is_not_null())
    holders = linked.group_by("person_id").agg(n_sources=pl.col("source").n_unique())
    per_source = (
        linked.select("source", "person_id")
        .unique()
        .join(holders, on="person_id")
        .group_by("source")
        .agg(persons=pl.len(), shared_persons=(pl.col("n_sources") >= 2).sum())
    )
    counts = records.group_by("source").agg(records=pl.len())
    return (
        sources.select("source")
        .join(counts, on="source", how="left")
        .join(per_source, on="source", how="left")
        .with_columns(pl.col("records", "persons", "shared_persons").fill_null(0).cast(pl.Int64))
        .with_columns(
            share_rate=pl.when(pl.col("persons") > 0).then(pl.col("shared_persons") / pl.col("persons"))
        )
        .select(SHARE_RATE_COLUMNS)
    )


def _overlap(records: pl.DataFrame, sources: pl.DataFrame) -> pl.DataFrame:
    held = records.filter(pl.col("person_id").is_not_null()).select("source", "person_id").unique()
    pairs = (
        held.join(held, on="person_id", suffix="_r")
        .filter(pl.col("source") != pl.col("source_r"))
        .group_by("source", "source_r")
        .agg(shared_persons=pl.len())
        .rename({"source": "source_l"})
    )
    names = sources.get_column("source").to_list()
    grid = pl.DataFrame(
        [(left, right) for left in names for right in names if left != right],
        schema={"source_l": pl.String, "source_r": pl.String},
        orient="row",
    )
    return (
        grid.join(pairs, on=["source_l", "source_r"], how="left")
        .with_columns(pl.col("shared_persons").fill_null(0).cast(pl.Int64))
        .select("source_l", "source_r", "shared_persons")
    )


def _mapped_fields(std: pl.DataFrame, source: str) -> list[str]:
    rows = std.filter(pl.col("source") == source)
    mapped = []
    for name in COMPLETENESS_FIELDS:
        candidates = [c for c in (f"{name}_raw", name) if c in rows.columns]
        if any(rows.get_column(c).is_not_null().any() for c in candidates):
            mapped.append(name)
    return mapped


def field_completeness(
    std: pl.DataFrame, mapped_fields: dict[str, list[str]] | None = None
) -> dict[str, dict[str, float | None]]:
    """source -> field -> share of its records with the standardized field filled."""
    result: dict[str, dict[str, float | None]] = {}
    for source in std.get_column("source").unique(maintain_order=True).to_list():
        rows = std.filter(pl.col("source") == source)
        fields = (mapped_fields or {}).get(source)
        if fields is None:
            fields = _mapped_fields(std, source)
        # record_id is never empty on an accepted record: not a completeness question.
        fields = [f for f in COMPLETENESS_FIELDS if f in set(fields)]
        completeness: dict[str, float | None] = {}
        for name in fields:
            filled = rows.get_column(name).is_not_null().sum() if name in rows.columns else 0
            completeness[name] = _ratio(filled, rows.height)
        result[source] = completeness
    return result


def _household_consistency(records: pl.DataFrame) -> dict[str, int | float | None]:
    hukou = registered_hukou(records).select("person_id")
    both = hukou.join(current_residence(residence_evidence(records)), on="person_id")
    # Living in any township the register places them in agrees, as for hukou_residence_split
    # (someone registered in two households, 一人多户, living at either is not split).
    towns = records.filter(
        (pl.col("source_kind") == "hukou") & pl.col("person_id").is_not_null() & pl.col("hukou_town").is_not_null()
    ).select("person_id", live_town=pl.col("hukou_town"))
    agree = both.join(towns, on=["person_id", "live_town"], how="semi").height
    return rate(agree, both.height)


def city_prefixes(records: pl.DataFrame) -> set[str]:
    """The city's prefecture codes (4 digits), as the household register's regions name them."""
    register = records.filter(pl.col("source_kind") == "hukou")
    codes = pl.concat([register.get_column("hukou_region"), register.get_column("hukou_town")]).drop_nulls()
    return {code[:4] for code in codes.unique().to_list() if len(code) >= 6}


def floating_persons(records: pl.DataFrame) -> pl.DataFrame:
    """person_id of every person known to hold a hukou outside the city and not in the register."""
    prefixes = sorted(city_prefixes(records))
    linked = records.filter(pl.col("person_id").is_not_null())
    in_register = linked.filter(pl.col("source_kind") == "hukou").select("person_id").unique()
    outsiders = linked.join(in_register, on="person_id", how="anti")
    stated = outsiders.select("person_id", region=pl.coalesce("hukou_town", "hukou_region")).filter(
        pl.col("region").str.len_chars() >= 6
    )
    # Nobody states their hukou: the county that issued their resident id stands in for it
    # (it is where the hukou was first registered; the register would hold a local).
    by_id = (
        outsiders.select("person_id", region=pl.col("id_region"))
        .filter(pl.col("region").str.len_chars() >= 6)
        .join(stated, on="person_id", how="anti")
    )
    stated = pl.concat([stated, by_id])
    if not prefixes:
        # Without a register the city is unknown, so nobody can be called floating.
        return stated.select("person_id").clear()
    outside = ~pl.col("region").str.slice(0, 4).is_in(prefixes)
    return stated.filter(outside).select("person_id").unique().sort("person_id")


def _floating_registration(records: pl.DataFrame) -> dict[str, int | float | None]:
    floating = floating_persons(records)
    registered = records.filter(pl.col("source_kind") == "residence").select("person_id").unique()
    return rate(floating.join(registered, on="person_id").height, floating.height)


def _findings_counts(findings: pl.DataFrame, departments: list[str]) -> dict:
    kinds = list(FINDING_KINDS) + sorted(
        set(findings.get_column("kind").unique().to_list()) - set(FINDING_KINDS)
    )
    by_kind = {kind: 0 for kind in kinds}
    persons_by_kind = {kind: 0 for kind in kinds}
    for kind, rows, persons in (
        findings.group_by("kind").agg(rows=pl.len(), persons=pl.col("person_id").n_unique()).iter_rows()
    ):
        by_kind[kind] = rows
        persons_by_kind[kind] = persons
    by_department = {department: {kind: 0 for kind in kinds} for department in departments}
    if "department" in findings.columns:
        for department, kind, n in findings.group_by("department", "kind").agg(n=pl.len()).iter_rows():
            by_department.setdefault(department, {k: 0 for k in kinds})[kind] = n
    return {"by_kind": by_kind, "persons_by_kind": persons_by_kind, "by_department": by_department}


def _rates_result(
    *,
    share_rates: pl.DataFrame,
    sources: pl.DataFrame,
    overlap: pl.DataFrame,
    duplicates_of: dict[str, int],
    completeness: dict[str, dict[str, float | None]],
    persons: int,
    multi_source: int,
    records: int,
    household_consistency: dict,
    floating_registration: dict,
    findings: pl.DataFrame,
) -> Rates:
    """The metrics both entrances report, from the counts each makes its own way."""
    per_source: dict[str, dict] = {}
    for row in share_rates.join(sources, on="source").iter_rows(named=True):
        duplicates = int(duplicates_of.get(row["source"], 0) or 0)
        per_source[row["source"]] = {
            "department": row["department"],
            "kind": row["kind"],
            "persons": row["persons"],
            "shared_persons": row["shared_persons"],
            "share_rate": _ratio(row["shared_persons"], row["persons"]),
            "duplicate_records": duplicates,
            "duplicate_rate": _ratio(duplicates, row["records"]),
            "field_completeness": completeness.get(row["source"], {}),
        }
    duplicate_records = sum(s["duplicate_records"] for s in per_source.values())
    overlap_matrix: dict[str, dict[str, int]] = {name: {} for name in sources.get_column("source")}
    for left, right, n in overlap.iter_rows():
        overlap_matrix[left][right] = n
    metrics = {
        "persons": persons,
        "duplicate_records": duplicate_records,
        "duplicate_rate": rate(duplicate_records, records),
        "share_rate": rate(multi_source, persons),
        "household_consistency_rate": household_consistency,
        "floating_registration_rate": floating_registration,
        "sources": per_source,
        "overlap": overlap_matrix,
        "findings": _findings_counts(
            findings, sources.get_column("department").unique(maintain_order=True).to_list()
        ),
    }
    return Rates(share_rates=share_rates, overlap=overlap, metrics=metrics)


def compute_rates(
    std: pl.DataFrame,
    entity_map: pl.DataFrame,
    findings: pl.DataFrame,
    mapped_fields: dict[str, list[str]] | None = None,
    sources: pl.DataFrame | None = None,
) -> Rates:
    """Share rates, the overlap matrix and the run's rate metrics.

    ``mapped_fields`` (source -> canonical fields its mapping names) makes field
    completeness follow the sources file; without it a field counts as mapped by a
    source when at least one of its records has it.

    ``sources`` (source, department, kind, in the sources file's order): every source of
    the night, each reported even with no record (an empty extract, every row quarantined:
    0 records, 0 persons, no share rate); without it, the sources that have records.
    """
    records = person_records(std, entity_map)
    sources = _sources(std) if sources is None else sources.select("source", "department", "kind")
    share_rates = _share_rates(records, sources)
    overlap = _overlap(records, sources)

    linked = records.filter(pl.col("person_id").is_not_null())
    persons = linked.get_column("person_id").n_unique()
    multi_source = (
        linked.group_by("person_id").agg(n=pl.col("source").n_unique()).filter(pl.col("n") >= 2).height
    )
    completeness = field_completeness(std, mapped_fields)

    # Records the entity map does not hold are not duplicates of anybody.
    duplicates_of = dict(
        linked.group_by("source").agg(n=pl.len() - pl.col("person_id").n_unique()).iter_rows()
    )
    return _rates_result(
        share_rates=share_rates,
        sources=sources,
        overlap=overlap,
        duplicates_of=duplicates_of,
        completeness=completeness,
        persons=persons,
        multi_source=multi_source,
        records=records.height,
        household_consistency=_household_consistency(records),
        floating_registration=_floating_registration(records),
        findings=findings,
    )


def compute_rates_db(
    con: duckdb.DuckDBPyConnection,
    findings: pl.DataFrame,
    mapped_fields: dict[str, list[str]] | None = None,
    *,
    records: str | None = None,
    standardized: str = "int_persons_standardized",
    entity_map: str = "entity_map",
    sources: pl.DataFrame | None = None,
) -> Rates:
    """``compute_rates`` over the run's tables: the same figures, counted in DuckDB.

    Only per-source and per-pair counts come back to polars, so the cost in memory does
    not grow with the city. ``records``: as for ``find_household_findings_db``;
    ``sources``: as for ``compute_rates``.
    """
    if records is not None:
        return _rates_db(con, records, standardized, findings, mapped_fields, sources)
    with person_records_table(con, standardized=standardized, entity_map=entity_map) as made:
        return _rates_db(con, made, standardized, findings, mapped_fields, sources)


def _rates_db(
    con: duckdb.DuckDBPyConnection,
    view: str,
    standardized: str,
    findings: pl.DataFrame,
    mapped_fields: dict[str, list[str]] | None,
    sources: pl.DataFrame | None = None,
) -> Rates:
    present = {row[0] for row in con.execute(f"describe {standardized}").fetchall()}
    department = "department" if "department" in present else "source"
    kind = "source_kind" if "source_kind" in present else "'generic'"
    if sources is not None:
        sources = sources.select("source", "department", "kind")
    else:
        # The sources file's order is the order of their first records.
        sources = con.execute(
            f"""
            select source, {department} as department, {kind} as kind
            from {standardized}
            qualify row_number() over (partition by source order by record_key) = 1
            order by record_key
            """
        ).pl()
    counts = con.execute(
        f"select source, count(*) as records, count(person_id) as linked_records from {view} group by source"
    ).pl()
    # People by the set of sources holding them: a handful of sets, from which every count of
    # persons per source, per pair of sources and overall follows.
    # One bit per source, OR-ed per person: a fixed-size aggregate state, which DuckDB can
    # spill to disk; a list per person (list(distinct source)) cannot, and ran out of its
    # 1 GB at ten million records.
    source_names = sources.get_column("source").to_list()
    if len(source_names) > 62:
        raise ValueError(f"{len(source_names)} sources: the share rates count at most 62 (one bit each)")
    con.register(
        "rates_source_bits",
        pl.DataFrame(
            {"source": source_names, "bit": [1 << i for i in range(len(source_names))]},
            schema={"source": pl.String, "bit": pl.Int64},
        ),
    )
    try:
        masks = con.execute(
            f"""
            select holders, count(*) as persons from (
                select bit_or(b.bit) as holders
                from {view} as r join rates_source_bits as b using (source)
                where r.person_id is not null
                group by r.person_id
            )
            group by holders
            """
        ).fetchall()
    finally:
        con.unregister("rates_source_bits")
    held = [([name for i, name in enumerate(source_names) if mask >> i & 1], n) for mask, n in masks]
    persons_of: dict[str, int] = {}
    shared_of: dict[str, int] = {}
    pair_counts: dict[tuple[str, str], int] = {}
    persons = multi_source = 0
    for holders, n in held:
        persons += n
        multi_source += n if len(holders) >= 2 else 0
        for left in holders:
            persons_of[left] = persons_of.get(left, 0) + n
            shared_of[left] = shared_of.get(left, 0) + (n if len(holders) >= 2 else 0)
            for right in holders:
                if left != right:
                    pair_counts[left, right] = pair_counts.get((left, right), 0) + n
    per_source_counts = counts.with_columns(
        persons=pl.col("source").replace_strict(persons_of, default=None, return_dtype=pl.Int64),
        shared_persons=pl.col("source").replace_strict(shared_of, default=None, return_dtype=pl.Int64),
    )
    share_rates = (
        sources.select("source")
        .join(
            per_source_counts.select("source", "records", "persons", "shared_persons"),
            on="source",
            how="left",
        )
        .with_columns(pl.col("records", "persons", "shared_persons").fill_null(0).cast(pl.Int64))
        .with_columns(
            share_rate=pl.when(pl.col("persons") > 0).then(pl.col("shared_persons") / pl.col("persons"))
        )
        .select(SHARE_RATE_COLUMNS)
    )
    names = sources.get_column("source").to_list()
    overlap = pl.DataFrame(
        [
            (left, right, pair_counts.get((left, right), 0))
            for left in names
            for right in names
            if left != right
        ],
        schema={"source_l": pl.String, "source_r": pl.String, "shared_persons": pl.Int64},
        orient="row",
    )
    records = int(counts.get_column("records").sum())
    # Records the entity map does not hold are not duplicates of anybody.
    duplicates_of = {
        source: linked - persons_of.get(source, 0)
        for source, linked in counts.select("source", "linked_records").iter_rows()
    }
    completeness = _field_completeness_db(con, standardized, present, sources, mapped_fields)
    return _rates_result(
        share_rates=share_rates,
        sources=sources,
        overlap=overlap,
        duplicates_of=duplicates_of,
        completeness=completeness,
        persons=persons,
        multi_source=multi_source,
        records=records,
        household_consistency=_household_consistency_db(con, view),
        floating_registration=_floating_registration_db(con, view),
        findings=findings,
    )


def _field_completeness_db(
    con: duckdb.DuckDBPyConnection,
    standardized: str,
    present: set[str],
    sources: pl.DataFrame,
    mapped_fields: dict[str, list[str]] | None,
    raw_values: str = RAW_VALUES_VIEW,
) -> dict[str, dict[str, float | None]]:
    """``field_completeness`` from one count per (source, column) made in DuckDB."""
    def filled_counts(qualified: list[str]) -> str:
        # count(s."name") as name: each column's filled cells under its own name.
        return ", ".join(f'count({c}) as {c.split(".", 1)[1]}' for c in qualified)

    columns = [f's."{c}"' for name in COMPLETENESS_FIELDS for c in (name, f"{name}_raw") if c in present]
    filled = filled_counts(columns)
    counts = {
        row["source"]: row
        for row in con.execute(
            f"select s.source, count(*) as __rows{', ' + filled if filled else ''} from {standardized} s group by s.source"
        )
        .pl()
        .iter_rows(named=True)
    }
    # The raw cells the stored table leaves out are counted where they are kept, in a count
    # of their own over the same records: joining the two tables row by row to count both
    # at once took 9.3 s at 10M records, against 0.6 + 1.1 s for the two counts apart.
    # Only the columns the join would add are used: the count reads raw_values by itself.
    _, raw_columns = raw_values_join(con, present, [f"{name}_raw" for name in COMPLETENESS_FIELDS], raw_values)
    if raw_columns:
        raw_counts = con.execute(
            f"select v.source, {filled_counts(raw_columns)} from {raw_values} v "
            f"semi join {standardized} s using (record_key) group by v.source"
        ).pl()
        for row in raw_counts.iter_rows(named=True):
            if row["source"] in counts:
                counts[row["source"]].update({c: n for c, n in row.items() if c != "source"})
    result: dict[str, dict[str, float | None]] = {}
    for source in sources.get_column("source").to_list():
        row = counts.get(source)
        if row is None:
            continue
        fields = (mapped_fields or {}).get(source)
        if fields is None:
            # Mapped: the raw or the standard value is filled on at least one record.
            fields = [n for n in COMPLETENESS_FIELDS if row.get(f"{n}_raw", 0) or row.get(n, 0)]
        # record_id is never empty on an accepted record: not a completeness question.
        chosen = [f for f in COMPLETENESS_FIELDS if f in set(fields)]
        result[source] = {name: _ratio(row.get(name, 0) or 0, row["__rows"]) for name in chosen}
    return result


# Each person's freshest register record with a township, and freshest residence evidence:
# the same picks as ``registered_hukou`` and ``current_residence``.
_HUKOU_OF = """
    select person_id, hukou_town from {view}
    where source_kind = 'hukou' and person_id is not null and hukou_town is not null
    qualify row_number() over (partition by person_id order by fresh desc nulls last, source, record_id) = 1
"""
# Only people with a register township are counted, so only theirs is picked (a window over
# every resident's evidence cost twice as much).
_LIVES_IN = """
    select person_id, res_town as live_town from {view}
    semi join __renhu_hukou_of using (person_id)
    where source_kind <> 'hukou' and person_id is not null and res_town is not null
    qualify row_number() over (
        partition by person_id order by fresh desc nulls last, kind_priority, source, record_id
    ) = 1
"""


def _household_consistency_db(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, int | float | None]:
    # Each pick into a temporary table, which DuckDB spills under a tight memory limit.
    steps = {"__renhu_hukou_of": _HUKOU_OF.format(view=view), "__renhu_lives_in": _LIVES_IN.format(view=view)}
    try:
        for table, query in steps.items():
            con.execute(f"create or replace temp table {table} as {query}")
        agree, both = con.execute(
            f"""
            select
                count(*) filter (where hukou_town = live_town or exists (
                    select 1 from {view} t
                    where t.source_kind = 'hukou' and t.person_id = l.person_id and t.hukou_town = l.live_town
                )),
                count(*)
            from __renhu_hukou_of h join __renhu_lives_in l using (person_id)
            """
        ).fetchone()
    finally:
        for table in steps:
            con.execute(f"drop table if exists {table}")
    return rate(agree, both)


def _floating_registration_db(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, int | float | None]:
    prefixes = sorted(
        row[0]
        for row in con.execute(
            f"""
            select distinct left(code, 4) from (
                select hukou_region as code from {view} where source_kind = 'hukou'
                union all
                select hukou_town from {view} where source_kind = 'hukou'
            )
            where length(code) >= 6
            """
        ).fetchall()
    )
    if not prefixes:
        # Without a register the city is unknown, so nobody can be called floating.
        return rate(0, 0)
    # One step per temporary table, which DuckDB spills: one query holding these as CTEs
    # ran out of memory first when the memory limit was tight.
    steps = {
        "__renhu_outsiders": f"""
            select person_id, hukou_town, hukou_region, id_region from {view}
            where person_id is not null
            and person_id not in (select person_id from {view} where source_kind = 'hukou' and person_id is not null)
        """,
        "__renhu_stated": """
            select person_id, coalesce(hukou_town, hukou_region) as region from __renhu_outsiders
            where length(coalesce(hukou_town, hukou_region)) >= 6
        """,
        # Nobody states their hukou: the county that issued their resident id stands in for it.
        "__renhu_floating": """
            select distinct person_id from (
                select person_id, region from __renhu_stated
                union all
                select person_id, id_region from __renhu_outsiders
                where length(id_region) >= 6 and person_id not in (select person_id from __renhu_stated)
            )
            where not list_contains($prefixes, left(region, 4))
        """,
    }
    try:
        for table, query in steps.items():
            params = {"prefixes": prefixes} if "$prefixes" in query else {}
            con.execute(f"create or replace temp table {table} as {query}", params)
        floating, registered = con.execute(
            f"""
            select
                count(*),
                count(*) filter (where person_id in (
                    select person_id from {view} where source_kind = 'residence' and person_id is not null
                ))
            from __renhu_floating
            """
        ).fetchone()
    finally:
        for table in steps:
            con.execute(f"drop table if exists {table}")
    return rate(registered, floating)
