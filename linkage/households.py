"""Person–household checks over linked records: one row per evidence record of a finding.

Grain of the output: one row per (finding, evidence record). A finding that two records
show (a household register entry and a residence registration) gives two rows, so each
department sees the finding on its own records.

Households are compared by their members (person ids), never by their numbers: every
department numbers households in its own scheme.

Kinds (DESIGN.md section 7), with the evidence rows each gives:

* ``hukou_residence_split`` (人户分离): the township/street (9-digit code) of the person's
  freshest residence evidence (any non-``hukou`` record giving a residence township:
  residence registration, rental tenancy, school, employer, health record, roster; ties
  go to the residence registration) is none of the townships the register places them
  in. Following the statistics bureau (离开户口登记地半年以上), a split whose evidence at
  the present township starts less than 182 days before ``as_of`` is not reported yet;
  when the start is unknown it is reported. The present stay is told by the records at
  that township dated on or after the person's last evidence anywhere else (an earlier
  stay there, before a return, does not count), and it counts only from the day the hukou
  was registered in its township (the register record's ``registered_at``), when known.
  Rows: the register record and every record of the present stay.
* ``multi_household`` (一人多户): one person in two or more households of the register.
  Households of different ``hukou`` sources are first matched by members (Jaccard >= 0.5
  and no disagreeing township), so the same household told by two registers is one.
  Rows: every register record of the person.
* ``roster_conflict``: a ``roster`` household against the register household it best
  matches (most shared members; ties to the one holding the roster's head). Rows: a
  roster member the register household lacks (and the register's own record of that
  person elsewhere); a register member the roster lacks; a roster head who is not the
  register's head.
* ``unregistered_resident`` (房不漏户, 户不漏人): a tenant (``rental``) or a pupil (a
  ``generic`` source whose people are nearly all minors: a school roster) living in a
  township where the person has neither a residence registration nor the household
  registration. Rows: the tenancy or school record.
* Household sanity on each register household (source + household number):
  ``two_heads`` (two or more persons entered as head; one head entered twice is a
  duplicate registration, not a second head), ``no_head``, ``child_older_than_parent``
  (a child/grandchild born on or before the head, or a parent/grandparent born on or
  after; the row is the member's), ``spouse_under_legal_age`` (head or spouse younger
  than 22 for men, 20 for women, on ``as_of``).

``related_department`` names the other department a finding concerns (the register's
clerk for a roster's conflict, the residence side for a split), so its report can show
the finding without that department's record.

Details are Chinese sentences with township names and codes, source names, household
numbers, person ids and masked names only: the findings file is published beyond the
owning department.

Two entrances give the same rows: ``find_household_findings(std, entity_map)`` over frames
(DESIGN.md section 4), and ``find_household_findings_db(con)`` over the run's DuckDB tables,
which the nightly stage uses. The checks are one code; only the cutting of their inputs
differs (``_FrameRecords`` / ``_DuckDBRecords``). In DuckDB the work over every record
(picking each person's freshest register record and residence, counting addresses and
school rosters) stays in SQL and each check loads only the records and columns it reads:
polars holds the register's records (eleven columns), tenancies and pupils, and the people
found split, never every record with every column.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta

import duckdb
import polars as pl

FINDING_COLUMNS: tuple[str, ...] = ("kind", "person_id", "source", "record_id", "detail")
EXTRA_COLUMNS: tuple[str, ...] = ("department", "related_department", "related_household_id")
# What household_findings.parquet publishes city-wide. ``related_household_id`` (the household
# number, in full and in the related department's own scheme, that a finding shown on another
# department's record concerns) is for the related department's own report only.
PUBLISHED_FINDING_COLUMNS: tuple[str, ...] = (*FINDING_COLUMNS, "department", "related_department")

FINDING_KINDS: tuple[str, ...] = (
    "hukou_residence_split",
    "multi_household",
    "roster_conflict",
    "unregistered_resident",
    "two_heads",
    "no_head",
    "child_older_than_parent",
    "spouse_under_legal_age",
)

KIND_LABELS: dict[str, str] = {
    "hukou_residence_split": "人户分离",
    "multi_household": "一人多户",
    "roster_conflict": "户成员不一致",
    "unregistered_resident": "居住未登记",
    "two_heads": "一户多个户主",
    "no_head": "户无户主",
    "child_older_than_parent": "子女年长于父母",
    "spouse_under_legal_age": "配偶未达法定婚龄",
}

# The statistics bureau counts 人户分离 only after half a year away.
SPLIT_MIN_DAYS = 182
LEGAL_MARRIAGE_AGE = {"M": 22, "F": 20}
# Two registers' households are the same household when they share this share of members.
SAME_HOUSEHOLD_JACCARD = 0.5

RELATION_LABELS: dict[str, str] = {
    "head": "户主",
    "spouse": "配偶",
    "child": "子女",
    "parent": "父母",
    "grandchild": "孙子女",
    "grandparent": "祖父母",
    "sibling": "兄弟姐妹",
    "child_in_law": "儿媳/女婿",
    "other": "其他",
}

# Freshest-evidence ties are broken by how much the source vouches for residence.
_KIND_PRIORITY = {"residence": 0, "rental": 1, "generic": 2, "roster": 3, "hukou": 4}

_RECORD_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String,
    "department": pl.String,
    "source_kind": pl.String,
    "record_id": pl.String,
    "name": pl.String,
    "id_number": pl.String,
    "sex": pl.String,
    "id_sex": pl.String,
    "birth_date": pl.Date,
    "id_birth_date": pl.Date,
    "id_region": pl.String,
    "household_id": pl.String,
    "relation_to_head": pl.String,
    "hukou_region": pl.String,
    "hukou_township": pl.String,
    "residence_region": pl.String,
    "residence_township": pl.String,
    "hukou_address": pl.String,
    "residence_address": pl.String,
    "house_id": pl.String,
    "registered_at": pl.Date,
    "updated_at": pl.Date,
}


def mask_name(name: str | None) -> str | None:
    """张三丰 -> 张**; ZHANG WEI -> Z********: first character kept, the rest starred."""
    if name is None or name == "":
        return name
    return name[0] + "*" * max(len(name) - 1, 1)


def mask_id_number(id_number: str | None) -> str | None:
    """330602199001011234 -> 330602********1234 (first 6, 8 stars, last 4)."""
    if id_number is None or id_number == "":
        return id_number
    if len(id_number) <= 10:
        return id_number[:2] + "*" * max(len(id_number) - 2, 1)
    return id_number[:6] + "********" + id_number[-4:]


def person_records(std: pl.DataFrame, entity_map: pl.DataFrame) -> pl.DataFrame:
    """The standardized records with their ``person_id`` and derived helpers.

    Columns a hand-made or partial ``std`` lacks are added as nulls (a source that does
    not map a field has it null anyway). Adds ``person_id`` (null for a record the
    entity map does not hold), ``birth`` (birth date, else the id's), ``sex_any``,
    ``fresh`` (updated_at, else registered_at) and 9-digit ``hukou_town``/``res_town``.
    """
    frame = std
    for column, dtype in _RECORD_SCHEMA.items():
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(column))
    frame = frame.select(
        [pl.col(c).cast(t) for c, t in _RECORD_SCHEMA.items()]
        + ([pl.col("record_key")] if "record_key" in frame.columns else [])
    )
    frame = frame.with_columns(
        pl.col("department").fill_null(pl.col("source")),
        pl.col("source_kind").fill_null("generic"),
    )
    persons = entity_map.select(
        pl.col("source").cast(pl.String),
        pl.col("record_id").cast(pl.String),
        pl.col("person_id").cast(pl.String),
    ).unique(subset=["source", "record_id"], keep="first")
    frame = frame.join(persons, on=["source", "record_id"], how="left")

    def township(code: str, region: str) -> pl.Expr:
        region_town = pl.when(pl.col(region).str.len_chars() == 9).then(pl.col(region))
        return pl.coalesce(pl.col(code), region_town)

    return frame.with_columns(
        birth=pl.coalesce("birth_date", "id_birth_date"),
        sex_any=pl.coalesce("sex", "id_sex"),
        fresh=pl.coalesce("updated_at", "registered_at"),
        hukou_town=township("hukou_township", "hukou_region"),
        res_town=township("residence_township", "residence_region"),
        kind_priority=pl.col("source_kind").replace_strict(_KIND_PRIORITY, default=5, return_dtype=pl.Int8),
    )


def place_names(records: pl.DataFrame) -> dict[str, str]:
    """9-digit township code -> "越城区北海街道", as the extracts' own addresses name it.

    The county comes from the GB/T 2260 table; the township is the name most addresses
    carrying that code start with (codes change as townships merge, so no fixed table).
    """
    pairs = pl.concat(
        [
            records.select(code=pl.col("hukou_town"), address=pl.col("hukou_address")),
            records.select(code=pl.col("res_town"), address=pl.col("residence_address")),
        ]
    ).filter(pl.col("code").is_not_null() & pl.col("address").is_not_null())
    return _names_from_addresses(pairs.with_columns(n=pl.lit(1, dtype=pl.Int64)))


# The township pattern matches at most 12 characters and a 2-character suffix: an address's
# first 14 characters decide its township, so addresses can be counted by that prefix.
ADDRESS_PREFIX_CHARS = 14


def _names_from_addresses(pairs: pl.DataFrame) -> dict[str, str]:
    """``place_names`` from (code, address, n): n addresses with that code start that way."""
    from linkage.regions import TOWNSHIP_PATTERN, region_table

    towns = (
        pairs.with_columns(town=pl.col("address").str.extract(TOWNSHIP_PATTERN, 1))
        .filter(pl.col("town").is_not_null())
        .group_by("code", "town")
        .agg(n=pl.col("n").sum())
        .sort(["code", "n", "town"], descending=[False, True, False])
        .group_by("code", maintain_order=True)
        .first()
    )
    if towns.is_empty():
        return {}
    counties = (
        region_table()
        .sort(pl.col("status") != "current")
        .unique(subset=["code"], keep="first")
        .select(county=pl.col("code"), county_name=pl.col("name"))
    )
    named = towns.with_columns(county=pl.col("code").str.slice(0, 6)).join(counties, on="county", how="left")
    return {
        code: f"{county or ''}{town}"
        for code, town, county in named.select("code", "town", "county_name").iter_rows()
    }


def mask_household_id(household_id: str | None) -> str | None:
    """001847336 -> 00*****36, H042 -> H**2: a finding names a household without giving its number away.

    A finding's detail reaches the city-wide household_findings.parquet and the reports of
    every department it concerns; the number in full stays in its own department's report.
    """
    if household_id is None or household_id == "":
        return household_id
    if len(household_id) <= 2:
        return household_id[0] + "*"
    if len(household_id) <= 4:
        return household_id[0] + "*" * (len(household_id) - 2) + household_id[-1]
    return household_id[:2] + "*" * (len(household_id) - 4) + household_id[-2:]


def masked_household_id(value: pl.Expr) -> pl.Expr:
    """``mask_household_id`` as an expression."""
    length = value.str.len_chars().cast(pl.Int64)
    tiny = pl.concat_str([value.str.slice(0, 1), pl.lit("*")])
    short = pl.concat_str([value.str.slice(0, 1).str.pad_end(length - 1, "*"), value.str.tail(1)])
    long = pl.concat_str([value.str.slice(0, 2).str.pad_end(length - 2, "*"), value.str.tail(2)])
    return (
        pl.when(length == 0).then(value).when(length <= 2).then(tiny).when(length <= 4).then(short).otherwise(long)
    )


def _household_label(source: pl.Expr, household_id: pl.Expr) -> pl.Expr:
    """"police_hukou 户号00*****36": a household as a finding's detail names it."""
    return pl.concat_str([source, pl.lit(" 户号"), masked_household_id(household_id)])


def _household_text(source: str, household_id: str | None) -> str:
    """``_household_label`` of one household."""
    return f"{source} 户号{mask_household_id(household_id)}"


def _place(code: str | None, names: dict[str, str]) -> str:
    if code is None:
        return "不详"
    name = names.get(code)
    return f"{name}（{code}）" if name else code


def _empty_split() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            **{c: pl.String for c in ("person_id", "hukou_town", "source", "household_id", "department")},
            "record_id": pl.String,
            "live_town": pl.String,
            "since": pl.Date,
            "seen": pl.Date,
        }
    )


def _empty_findings() -> pl.DataFrame:
    return pl.DataFrame(schema={c: pl.String for c in FINDING_COLUMNS + EXTRA_COLUMNS})


def _finding_rows(rows: list[dict[str, str | None]]) -> pl.DataFrame:
    if not rows:
        return _empty_findings()
    return pl.DataFrame(rows, schema={c: pl.String for c in FINDING_COLUMNS + EXTRA_COLUMNS})


def _fmt_date(value: date | None) -> str:
    return value.isoformat() if value is not None else "不详"


def _who(name: str | None, person_id: str | None) -> str:
    masked = mask_name(name)
    return f"{masked}（{person_id}）" if masked else f"{person_id}"


def registered_hukou(records: pl.DataFrame) -> pl.DataFrame:
    """One row per person in the register: their freshest register record with a township."""
    register = records.filter(
        (pl.col("source_kind") == "hukou")
        & pl.col("person_id").is_not_null()
        & pl.col("hukou_town").is_not_null()
    )
    # The sort picks each person's row by its keys alone; the rows are then taken whole.
    chosen = (
        register.select("person_id", "fresh", "source", "record_id")
        .with_row_index("_row")
        .sort(
            ["person_id", "fresh", "source", "record_id"],
            descending=[False, True, False, False],
            nulls_last=True,
        )
        .group_by("person_id", maintain_order=True)
        .first()
        .get_column("_row")
    )
    return register[chosen]


def residence_evidence(records: pl.DataFrame) -> pl.DataFrame:
    """Every non-register record that places a person in a township (``res_town``)."""
    return records.filter(
        (pl.col("source_kind") != "hukou")
        & pl.col("person_id").is_not_null()
        & pl.col("res_town").is_not_null()
    )


def current_residence(evidence: pl.DataFrame) -> pl.DataFrame:
    """person_id -> ``live_town``: the township of the freshest residence evidence.

    Freshness is updated_at, else registered_at; undated records lose to dated ones, and
    ties go to the source kind that vouches most for residence (residence registration
    first, then rental, then other lists).
    """
    # Only the sort keys and the answer go through the sort, not every column of the records.
    return (
        evidence.select("person_id", "fresh", "kind_priority", "source", "record_id", "res_town")
        .sort(
            ["person_id", "fresh", "kind_priority", "source", "record_id"],
            descending=[False, True, False, False, False],
            nulls_last=True,
        )
        .group_by("person_id", maintain_order=True)
        .first()
        .select("person_id", pl.col("res_town").alias("live_town"))
    )


def _place_expr(code: pl.Expr, names: dict[str, str]) -> pl.Expr:
    """``_place`` over a column: "name（code）" when the extracts name the code, else the code, or 不详."""
    name = (
        code.replace_strict(names, default=None, return_dtype=pl.String)
        if names
        else pl.lit(None, dtype=pl.String)
    )
    return (
        pl.when(code.is_null())
        .then(pl.lit("不详"))
        .when(name.is_not_null())
        .then(pl.concat_str([name, pl.lit("（"), code, pl.lit("）")]))
        .otherwise(code)
    )


def _related(related_department: pl.Expr) -> pl.Expr:
    """``_row``'s related_department over columns: null when it is the record's own department."""
    return pl.when(related_department != pl.col("department")).then(related_department)


def _finding_frame(kind: str, frame: pl.DataFrame, related_department: pl.Expr) -> pl.DataFrame:
    """Finding rows from a frame holding the evidence records and their ``detail``."""
    return frame.select(
        kind=pl.lit(kind, dtype=pl.String),
        person_id=pl.col("person_id"),
        source=pl.col("source"),
        record_id=pl.col("record_id"),
        detail=pl.col("detail"),
        department=pl.col("department"),
        related_department=_related(related_department),
        related_household_id=pl.lit(None, dtype=pl.String),
    )


# The columns of a residence evidence record the 人户分离 check and its rows read.
EVIDENCE_COLUMNS: tuple[str, ...] = (
    "person_id",
    "res_town",
    "fresh",
    "registered_at",
    "kind_priority",
    "source",
    "record_id",
    "department",
)
# The columns of a register record with a township that the check reads.
HUKOU_TOWN_COLUMNS: tuple[str, ...] = (
    "source_kind",
    "person_id",
    "fresh",
    "source",
    "record_id",
    "department",
    "household_id",
    "hukou_town",
    "registered_at",
)


def split_candidates(
    hukou_rows: pl.DataFrame, evidence: pl.DataFrame, as_of: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The people whose register township is not where they live, and the records that place them.

    ``hukou_rows``: the register records with a township; ``evidence``: ``residence_evidence``'s
    rows (``EVIDENCE_COLUMNS``), in record order. Returns ``split`` (one row per person: their
    register record's columns, ``live_town``, ``since``, ``seen``) and ``at_live`` (their
    evidence records at ``live_town``, in record order).
    """
    hukou_of = registered_hukou(hukou_rows).rename({"registered_at": "hukou_registered_at"})
    freshest = current_residence(evidence)
    all_towns = hukou_rows.group_by("person_id").agg(hukou_towns=pl.col("hukou_town").unique())
    # The records of the present stay at the freshest township show the split: those dated
    # on or after the person's last evidence anywhere else (an earlier stay there, before a return,
    # is not this one); the earliest start among them is "since when".
    with_live = evidence.join(freshest, on="person_id", maintain_order="left")
    last_elsewhere = (
        with_live.filter(pl.col("res_town") != pl.col("live_town"))
        .group_by("person_id")
        .agg(last_elsewhere=pl.col("fresh").max())
    )
    at_live = (
        with_live.join(last_elsewhere, on="person_id", how="left", maintain_order="left")
        .filter(
            (pl.col("res_town") == pl.col("live_town"))
            & (
                pl.col("last_elsewhere").is_null()
                | pl.col("fresh").is_null()
                | (pl.col("fresh") >= pl.col("last_elsewhere"))
            )
        )
        .drop("last_elsewhere")
    )
    since = at_live.group_by("person_id").agg(since=pl.col("registered_at").min(), seen=pl.col("fresh").max())
    split = (
        hukou_of.join(freshest, on="person_id")
        .join(since, on="person_id", how="left")
        .join(all_towns, on="person_id", how="left")
        # Someone registered in two households (一人多户) living at either is not split.
        .filter(~pl.col("live_town").is_in(pl.col("hukou_towns")).fill_null(False))
        # Away from the register's township only since the hukou was registered there.
        .with_columns(
            since=pl.when(pl.col("since").is_not_null()).then(
                pl.max_horizontal("since", "hukou_registered_at")
            )
        )
        .filter(
            pl.coalesce("since", "hukou_registered_at").is_null()
            | (pl.coalesce("since", "hukou_registered_at") <= as_of - timedelta(days=SPLIT_MIN_DAYS))
        )
    )
    return split, at_live.filter(pl.col("person_id").is_in(split.get_column("person_id").implode()))


def _hukou_residence_split(split: pl.DataFrame, at_live: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    """The 人户分离 rows of ``split_candidates``' people: their register record and each record at
    the township they live in."""
    if split.is_empty():
        return _empty_findings()
    live_sources = at_live.group_by("person_id").agg(
        pl.col("source").unique(maintain_order=True).alias("live_sources"),
        pl.col("department").unique(maintain_order=True).alias("live_departments"),
    )
    # "据 source（department）、…" is written once per distinct set of sources, not per person.
    key = pl.concat_str(
        [pl.col("live_sources").list.join("\x1f"), pl.col("live_departments").list.join("\x1f")],
        separator="\x1e",
    )
    live_sources = live_sources.with_columns(live_key=key)
    distinct = live_sources.select("live_key", "live_sources", "live_departments").unique(subset=["live_key"])
    live_by = pl.DataFrame(
        [
            (
                k,
                "、".join(f"{src}（{dep}）" for src, dep in zip(sources, departments, strict=False)),
                departments[0],
            )
            for k, sources, departments in distinct.iter_rows()
        ],
        schema={"live_key": pl.String, "live_by": pl.String, "live_department": pl.String},
        orient="row",
    )
    split = split.join(live_sources.select("person_id", "live_key"), on="person_id", how="left").join(
        live_by, on="live_key", how="left"
    )
    since_text = (
        pl.when(pl.col("since").is_not_null())
        .then(pl.concat_str([pl.lit("自"), pl.col("since").cast(pl.String), pl.lit("起")]))
        .otherwise(
            pl.concat_str(
                [
                    pl.lit("起始时间不详（最近记录"),
                    pl.col("seen").cast(pl.String).fill_null("不详"),
                    pl.lit("）"),
                ]
            )
        )
    )
    household = (
        pl.when(pl.col("household_id").is_null() | (pl.col("household_id") == ""))
        .then(pl.lit("不详"))
        .otherwise(masked_household_id(pl.col("household_id")))
    )
    split = split.with_columns(
        detail=pl.concat_str(
            [
                pl.lit("人户分离：户籍登记在"),
                _place_expr(pl.col("hukou_town"), names),
                pl.lit("（"),
                pl.col("source"),
                pl.lit("，户号"),
                household,
                pl.lit("），实际居住在"),
                _place_expr(pl.col("live_town"), names),
                pl.lit("（据"),
                pl.col("live_by"),
                pl.lit("，"),
                since_text,
                pl.lit("）"),
            ]
        )
    )
    register_rows = _finding_frame("hukou_residence_split", split, pl.col("live_department"))
    # The residence side's records show the same finding; its related department is the register's.
    residence_rows = at_live.join(
        split.select("person_id", "detail", hukou_department=pl.col("department")), on="person_id"
    )
    return pl.concat(
        [
            register_rows,
            _finding_frame("hukou_residence_split", residence_rows, pl.col("hukou_department")),
        ]
    )


def _row(
    kind: str,
    person_id: str | None,
    record: dict,
    detail: str,
    related_department: str | None = None,
    related_household_id: str | None = None,
) -> dict[str, str | None]:
    """One finding row; ``related_household_id``: the related department's own number of the
    household the finding concerns, which its report shows (the detail masks it)."""
    related = related_department if related_department != record["department"] else None
    return {
        "kind": kind,
        "person_id": person_id,
        "source": record["source"],
        "record_id": record["record_id"],
        "detail": detail,
        "department": record["department"],
        "related_department": related,
        "related_household_id": related_household_id if related is not None else None,
    }


def register_households(records: pl.DataFrame) -> pl.DataFrame:
    """Register households matched across ``hukou`` sources by their members.

    One row per register record with a household number and a person: the record's
    columns plus ``household_key`` (``source`` + household number) and ``household``
    (the cross-source household: the smallest key of its group).
    """
    register = records.filter(
        (pl.col("source_kind") == "hukou")
        & pl.col("household_id").is_not_null()
        & pl.col("person_id").is_not_null()
    ).with_columns(household_key=pl.concat_str([pl.col("source"), pl.col("household_id")], separator="\x1f"))
    keys = register.get_column("household_key").unique().sort().to_list()
    parent = {k: k for k in keys}

    def find(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    if register.get_column("source").n_unique() > 1:
        members = register.select("household_key", "source", "person_id", "hukou_town").unique(
            subset=["household_key", "person_id"]
        )
        sizes = members.group_by("household_key").agg(
            size=pl.len(), towns=pl.col("hukou_town").drop_nulls().unique()
        )
        pairs = (
            members.join(members, on="person_id", suffix="_r")
            .filter(
                (pl.col("source") != pl.col("source_r"))
                & (pl.col("household_key") < pl.col("household_key_r"))
            )
            .group_by("household_key", "household_key_r")
            .agg(shared=pl.len())
            .join(sizes, on="household_key")
            .join(sizes, left_on="household_key_r", right_on="household_key", suffix="_r")
        )
        # A merged group holds at most one household of each register: two households of one
        # register are two households (一人多户 when they share a person), even when another
        # register's household matches both. Best matches first, so which merge wins is stable.
        group_sources = {k: {k.split("\x1f", 1)[0]} for k in keys}
        pairs = pairs.with_columns(
            jaccard=pl.col("shared") / (pl.col("size") + pl.col("size_r") - pl.col("shared"))
        ).sort(["jaccard", "household_key", "household_key_r"], descending=[True, False, False])
        for pair in pairs.iter_rows(named=True):
            towns_l, towns_r = set(pair["towns"]), set(pair["towns_r"])
            towns_agree = not towns_l or not towns_r or bool(towns_l & towns_r)
            if pair["jaccard"] >= SAME_HOUSEHOLD_JACCARD and towns_agree:
                a, b = find(pair["household_key"]), find(pair["household_key_r"])
                if a != b and not group_sources[a] & group_sources[b]:
                    root, child = min(a, b), max(a, b)
                    parent[child] = root
                    group_sources[root] |= group_sources.pop(child)
    group = pl.DataFrame(
        {"household_key": keys, "household": [find(k) for k in keys]},
        schema={"household_key": pl.String, "household": pl.String},
    )
    return register.join(group, on="household_key", how="left")


def _multi_household(register: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    multi = register.filter(pl.col("household").n_unique().over("person_id") >= 2).sort(
        ["person_id", "source", "household_id", "record_id"]
    )
    if multi.is_empty():
        return _empty_findings()
    rows: list[dict[str, str | None]] = []
    for (person_id,), group in multi.group_by("person_id", maintain_order=True):
        places = []
        for r in group.unique(subset=["household"], keep="first", maintain_order=True).iter_rows(named=True):
            relation = RELATION_LABELS.get(r["relation_to_head"] or "", "关系不详")
            places.append(
                f"{_household_text(r['source'], r['household_id'])}（{relation}，{_place(r['hukou_town'], names)}）"
            )
        detail = f"一人多户：同一人登记在{len(places)}个户中：" + "；".join(places)
        for r in group.iter_rows(named=True):
            rows.append(_row("multi_household", person_id, r, detail))
    return _finding_rows(rows)


def _household_labels(register: pl.DataFrame) -> pl.DataFrame:
    """household -> "police_hukou 户号H001" (several numbers when registers agree on it)."""
    return (
        register.select("household", "source", "household_id")
        .unique()
        .sort("household", "source", "household_id")
        .group_by("household", maintain_order=True)
        .agg(label=_household_label(pl.col("source"), pl.col("household_id")).str.join("、"))
    )


def _roster_conflict(records: pl.DataFrame, register: pl.DataFrame) -> pl.DataFrame:
    roster = records.filter(
        (pl.col("source_kind") == "roster")
        & pl.col("household_id").is_not_null()
        & pl.col("person_id").is_not_null()
    )
    if roster.is_empty() or register.is_empty():
        return _empty_findings()
    roster = roster.with_columns(
        roster_key=pl.concat_str([pl.col("source"), pl.col("household_id")], separator="\x1f")
    )
    # Best register household per roster household: the one sharing most members
    # (ties: the one holding the roster's head, then the smallest key, for a stable answer).
    # A roster household none of whose members is registered (from outside the city) matches nothing.
    membership = register.select("person_id", "household").unique()
    match = (
        roster.select("roster_key", "person_id", "relation_to_head")
        .unique(subset=["roster_key", "person_id"])
        .join(membership, on="person_id")
        .group_by("roster_key", "household")
        .agg(shared=pl.len(), holds_head=(pl.col("relation_to_head") == "head").any())
        .sort(["roster_key", "shared", "holds_head", "household"], descending=[False, True, True, False])
        .group_by("roster_key", maintain_order=True)
        .first()
        .select("roster_key", "household")
    )
    # Below, only the register households a roster matched and the people rosters list are read:
    # the rest of the register (nearly all of it) is left out of the grouping and sorting.
    register_all = register
    register = register.filter(pl.col("household").is_in(match.get_column("household").unique().implode()))
    labels = _household_labels(register)
    roster = roster.join(match, on="roster_key").join(labels, on="household")
    roster_side = roster.select(
        "roster_key",
        "household",
        "label",
        roster_source="source",
        roster_hh="household_id",
        roster_dept="department",
    ).unique(subset=["roster_key"])
    # The register's department and its own number of the household (one record's both).
    reg_department = register.group_by("household").agg(
        reg_dept=pl.col("department").first(), reg_hh=pl.col("household_id").first()
    )

    listed = register_all.filter(pl.col("person_id").is_in(roster.get_column("person_id").unique().implode()))
    elsewhere = listed.group_by("person_id").agg(
        elsewhere=_household_label(pl.col("source"), pl.col("household_id"))
        .unique()
        .sort()
        .str.join("、")
    )
    only_roster = (
        roster.join(membership, on=["person_id", "household"], how="anti")
        .join(elsewhere, on="person_id", how="left")
        .join(reg_department, on="household")
        .sort("roster_key", "person_id", "record_id")
    )
    rows: list[dict[str, str | None]] = []
    register_records = listed.select("person_id", "source", "record_id", "department")
    misplaced = register_records.join(
        only_roster.select("person_id", roster_dept=pl.col("department"), roster_hh=pl.col("household_id")).unique(
            "person_id"
        ),
        on="person_id",
    )
    details: dict[str, str] = {}
    for r in only_roster.iter_rows(named=True):
        where = "户籍登记中无此人" if r["elsewhere"] is None else "户籍登记在" + r["elsewhere"]
        detail = (
            f"户成员不一致：{_household_text(r['source'], r['household_id'])}列有成员{_who(r['name'], r['person_id'])}，"
            f"户籍{r['label']}无此人（{where}）"
        )
        rows.append(_row("roster_conflict", r["person_id"], r, detail, r["reg_dept"], r["reg_hh"]))
        details[r["person_id"]] = detail
    # The register's own record of a misplaced member shows the conflict to the register's clerk.
    for e in misplaced.iter_rows(named=True):
        rows.append(
            _row("roster_conflict", e["person_id"], e, details[e["person_id"]], e["roster_dept"], e["roster_hh"])
        )

    roster_members = roster.select("roster_key", "person_id").unique()
    only_register = (
        roster_side.join(register, on="household")
        .join(roster_members, on=["roster_key", "person_id"], how="anti")
        .sort("roster_key", "person_id", "record_id")
    )
    for r in only_register.iter_rows(named=True):
        relation = RELATION_LABELS.get(r["relation_to_head"] or "", "关系不详")
        detail = (
            f"户成员不一致：户籍{r['label']}的成员{_who(r['name'], r['person_id'])}（{relation}）"
            f"未列入{_household_text(r['roster_source'], r['roster_hh'])}"
        )
        rows.append(_row("roster_conflict", r["person_id"], r, detail, r["roster_dept"], r["roster_hh"]))

    def heads_of(frame: pl.DataFrame, key: str) -> pl.DataFrame:
        return (
            frame.filter(pl.col("relation_to_head") == "head")
            .sort("person_id", "record_id")
            .group_by(key)
            .agg(
                heads=pl.col("person_id").unique(maintain_order=True),
                head_names=pl.struct("name", "person_id").unique(maintain_order=True),
                head_records=pl.struct("source", "record_id", "department", "person_id"),
            )
        )

    disagree = (
        roster_side.join(heads_of(roster, "roster_key"), on="roster_key")
        .join(heads_of(register, "household"), on="household", suffix="_reg")
        .join(reg_department, on="household")
        .filter(pl.col("heads").list.set_intersection("heads_reg").list.len() == 0)
        .sort("roster_key")
    )
    for d in disagree.iter_rows(named=True):
        detail = (
            f"户主不一致：{_household_text(d['roster_source'], d['roster_hh'])}户主为"
            + "、".join(_who(h["name"], h["person_id"]) for h in d["head_names"])
            + f"，户籍{d['label']}户主为"
            + "、".join(_who(h["name"], h["person_id"]) for h in d["head_names_reg"])
        )
        # The roster's head entry is the one in question; the register's clerk sees it as a
        # finding concerning the register (related_department).
        for r in d["head_records"]:
            if r["person_id"] not in d["heads_reg"]:
                rows.append(_row("roster_conflict", r["person_id"], r, detail, d["reg_dept"], d["reg_hh"]))
    return _finding_rows(rows)


# A generic source whose people are nearly all minors is a school roster (学籍): its
# address is where the pupil lives. Other generic lists (health records, social
# insurance) place people too, but the 房不漏户/户不漏人 check is about tenants and pupils.
SCHOOL_ROSTER_MINOR_SHARE = 0.9
ADULT_AGE = 18


def school_rosters(records: pl.DataFrame, as_of: date) -> list[str]:
    """The ``generic`` sources that list pupils: at least 90% of their dated people are minors."""
    generic = records.filter((pl.col("source_kind") == "generic") & pl.col("birth").is_not_null())
    shares = generic.group_by("source").agg(minors=(pl.col("birth") > adult_born_by(as_of)).mean())
    return _school_sources(shares)


def adult_born_by(as_of: date) -> date:
    """Born on or before this day: an adult on ``as_of`` (29 February counts as the 28th)."""
    return date(as_of.year - ADULT_AGE, as_of.month, min(as_of.day, 28))


def _school_sources(shares: pl.DataFrame) -> list[str]:
    """From (source, minors: share of its dated people who are minors)."""
    return sorted(shares.filter(pl.col("minors") >= SCHOOL_ROSTER_MINOR_SHARE).get_column("source").to_list())


# The columns of a tenancy or school record the 居住未登记 check reads.
LIVING_COLUMNS: tuple[str, ...] = (
    "person_id",
    "res_town",
    "source",
    "record_id",
    "source_kind",
    "registered_at",
    "department",
)


def _living(records: pl.DataFrame, pupils: list[str]) -> pl.DataFrame:
    return records.filter(
        ((pl.col("source_kind") == "rental") | pl.col("source").is_in(pupils))
        & pl.col("person_id").is_not_null()
        & pl.col("res_town").is_not_null()
    ).select(LIVING_COLUMNS)


def _registered_places(records: pl.DataFrame) -> pl.DataFrame:
    """(person_id, town) where the person is registered: residence registrations and the register."""
    return (
        pl.concat(
            [
                records.filter(
                    (pl.col("source_kind") == "residence") & pl.col("res_town").is_not_null()
                ).select("person_id", town=pl.col("res_town")),
                records.filter(
                    (pl.col("source_kind") == "hukou") & pl.col("hukou_town").is_not_null()
                ).select("person_id", town=pl.col("hukou_town")),
            ]
        )
        .drop_nulls()
        .unique()
    )


def _unregistered_resident(
    living: pl.DataFrame, registered: pl.DataFrame, names: dict[str, str]
) -> pl.DataFrame:
    """``living``: tenancy and school records (``_living``); ``registered``: ``_registered_places``."""
    if living.is_empty():
        return _empty_findings()
    unregistered = living.join(
        registered, left_on=["person_id", "res_town"], right_on=["person_id", "town"], how="anti"
    ).sort(["person_id", "source", "record_id"])
    what = (
        pl.when(pl.col("source_kind") == "rental").then(pl.lit("租住")).otherwise(pl.lit("就学登记的住址在"))
    )
    since = (
        pl.when(pl.col("registered_at").is_not_null())
        .then(pl.concat_str([pl.lit("，自"), pl.col("registered_at").cast(pl.String), pl.lit("起")]))
        .otherwise(pl.lit(""))
    )
    unregistered = unregistered.with_columns(
        detail=pl.concat_str(
            [
                pl.lit("居住未登记："),
                what,
                _place_expr(pl.col("res_town"), names),
                pl.lit("（"),
                pl.col("source"),
                since,
                pl.lit("），该地既无居住登记，也非户籍登记地"),
            ]
        )
    )
    return _finding_frame("unregistered_resident", unregistered, pl.lit(None, dtype=pl.String))


def _household_sanity(register: pl.DataFrame, as_of: date) -> pl.DataFrame:
    if register.is_empty():
        return _empty_findings()
    hh = register.with_columns(
        label=_household_label(pl.col("source"), pl.col("household_id")),
        is_head=pl.col("relation_to_head") == "head",
    ).with_columns(
        n_heads=pl.col("person_id").filter(pl.col("is_head")).n_unique().over("household_key"),
        n_persons=pl.col("person_id").n_unique().over("household_key"),
        relation_known=pl.col("relation_to_head").is_not_null().any().over("household_key"),
        has_spouse=(pl.col("relation_to_head") == "spouse").any().over("household_key"),
    )
    rows: list[dict[str, str | None]] = []

    heads = hh.filter(pl.col("is_head")).sort("household_key", "person_id", "record_id")
    # Distinct persons: one head registered twice is a duplicate registration (重复登记),
    # reported there, not a second head.
    two = heads.filter(pl.col("n_heads") >= 2)
    if not two.is_empty():
        names = (
            two.unique(subset=["household_key", "person_id"], maintain_order=True)
            .group_by("household_key", maintain_order=True)
            .agg(names=pl.struct("name", "person_id"))
        )
        for r in two.join(names, on="household_key").iter_rows(named=True):
            who = "、".join(_who(n["name"], n["person_id"]) for n in r["names"])
            detail = f"一户多个户主：{r['label']}有{r['n_heads']}名户主：{who}"
            rows.append(_row("two_heads", r["person_id"], r, detail))

    no_head = hh.filter((pl.col("n_heads") == 0) & pl.col("relation_known"))
    for r in no_head.sort("household_key", "person_id", "record_id").iter_rows(named=True):
        detail = f"户无户主：{r['label']}的{r['n_persons']}名成员中无人登记为户主"
        rows.append(_row("no_head", r["person_id"], r, detail))

    # Generations are checked against the head only: the register records each member's
    # relation to the head, not to one another.
    the_head = (
        heads.filter(pl.col("n_heads") == 1)
        .unique(subset=["household_key"], keep="first")
        .select(
            "household_key",
            head_person=pl.col("person_id"),
            head_record=pl.col("record_id"),
            head_source=pl.col("source"),
            head_department=pl.col("department"),
            head_name=pl.col("name"),
            head_birth=pl.col("birth"),
        )
    )
    paired = hh.join(the_head, on="household_key").filter(
        pl.col("birth").is_not_null() & pl.col("head_birth").is_not_null()
    )
    reversed_generations = paired.filter(
        (
            pl.col("relation_to_head").is_in(["child", "grandchild"])
            & (pl.col("birth") <= pl.col("head_birth"))
        )
        | (
            pl.col("relation_to_head").is_in(["parent", "grandparent"])
            & (pl.col("birth") >= pl.col("head_birth"))
        )
    ).sort("household_key", "person_id", "record_id")
    for r in reversed_generations.iter_rows(named=True):
        relation = r["relation_to_head"]
        # Which way the dates disagree, not the dates: this detail reaches every department
        # the household concerns, and a birth date beside a masked id gives the id back.
        order = "不晚于" if relation in ("child", "grandchild") else "不早于"
        detail = (
            f"子女年长于父母：{r['label']}中{RELATION_LABELS[relation]}{_who(r['name'], r['person_id'])}"
            f"的出生日期{order}户主{_who(r['head_name'], r['head_person'])}的出生日期"
        )
        # The member's entry is the one in question: the head's is the yardstick.
        rows.append(_row("child_older_than_parent", r["person_id"], r, detail))

    couples = (
        hh.filter(
            pl.col("has_spouse")
            & pl.col("relation_to_head").is_in(["head", "spouse"])
            & pl.col("birth").is_not_null()
            & pl.col("sex_any").is_in(list(LEGAL_MARRIAGE_AGE))
        )
        .with_columns(
            age=age_on(pl.col("birth"), as_of),
            minimum=pl.col("sex_any").replace_strict(LEGAL_MARRIAGE_AGE, return_dtype=pl.Int32),
        )
        .filter(pl.col("age") < pl.col("minimum"))
        .sort("household_key", "person_id", "record_id")
    )
    for r in couples.iter_rows(named=True):
        minimum, age = r["minimum"], r["age"]
        sex = "男" if r["sex_any"] == "M" else "女"
        role = RELATION_LABELS[r["relation_to_head"]]
        detail = (
            f"配偶未达法定婚龄：{r['label']}的{role}{_who(r['name'], r['person_id'])}（{sex}）"
            f"截至{as_of.isoformat()}为{age}岁，低于法定婚龄{minimum}岁"
        )
        rows.append(_row("spouse_under_legal_age", r["person_id"], r, detail))
    return _finding_rows(rows)


def age_on(birth: pl.Expr, on: date) -> pl.Expr:
    """Whole years of age on ``on``: the birthday must have come (29 Feb counts from 1 Mar)."""
    before_birthday = (birth.dt.month() > on.month) | (
        (birth.dt.month() == on.month) & (birth.dt.day() > on.day)
    )
    return (pl.lit(on.year) - birth.dt.year() - before_birthday.cast(pl.Int32)).cast(pl.Int32)


def find_household_findings(
    std: pl.DataFrame, entity_map: pl.DataFrame, as_of: date | None = None
) -> pl.DataFrame:
    """Every household finding, one row per evidence record.

    Columns: ``kind, person_id, source, record_id, detail`` then ``department`` (of the
    evidence record) and ``related_department`` (the other department the finding
    concerns, when there is one). ``as_of`` is the day ages and the half-year rule are
    measured on (default: today).
    """
    return _findings(_FrameRecords(person_records(std, entity_map)), as_of or date.today())


def find_household_findings_db(
    con: duckdb.DuckDBPyConnection,
    as_of: date | None = None,
    *,
    records: str | None = None,
    standardized: str = "int_persons_standardized",
    entity_map: str = "entity_map",
) -> pl.DataFrame:
    """``find_household_findings`` over the run's tables: the same rows, read in DuckDB.

    Each check loads only the records and columns it reads (the register, the residence
    evidence, tenancies and pupils), and the counts over every record (township names,
    school rosters) are made in DuckDB, so the city's records never sit in polars whole.
    ``records``: a table ``person_records_table`` made (the caller keeps it for the rates);
    without it one is made from ``standardized`` and ``entity_map`` and dropped after.
    """
    as_of = as_of or date.today()
    if records is not None:
        return _findings(_DuckDBRecords(con, records, standardized), as_of)
    with person_records_table(con, standardized=standardized, entity_map=entity_map) as made:
        return _findings(_DuckDBRecords(con, made, standardized), as_of)


def _findings(records: _FrameRecords | _DuckDBRecords, as_of: date) -> pl.DataFrame:
    names = _names_from_addresses(records.address_counts())
    parts = [_hukou_residence_split(*records.split_candidates(as_of), names)]
    register = register_households(records.register_rows())
    pupils = _school_sources(records.minor_shares(as_of))
    living = records.living(pupils)
    parts += [
        _multi_household(register, names),
        _roster_conflict(records.roster_rows(), register),
        _unregistered_resident(living, records.registered_places(pupils), names),
        _household_sanity(register, as_of),
    ]
    findings = pl.concat(parts, how="vertical")
    order = {kind: i for i, kind in enumerate(FINDING_KINDS)}
    return (
        findings.unique(
            subset=["kind", "person_id", "source", "record_id"], keep="first", maintain_order=True
        )
        .with_columns(_order=pl.col("kind").replace_strict(order, default=len(order), return_dtype=pl.Int32))
        .sort(["_order", "person_id", "source", "record_id"], nulls_last=True)
        .drop("_order")
    )


# The columns of a register record (with a household number) the household checks read.
REGISTER_COLUMNS: tuple[str, ...] = (
    "source",
    "department",
    "source_kind",
    "record_id",
    "person_id",
    "household_id",
    "relation_to_head",
    "hukou_town",
    "name",
    "birth",
    "sex_any",
)
ROSTER_COLUMNS: tuple[str, ...] = (
    "source",
    "department",
    "source_kind",
    "record_id",
    "person_id",
    "household_id",
    "relation_to_head",
    "name",
)


class _FrameRecords:
    """The checks' inputs cut from a ``person_records`` frame."""

    def __init__(self, records: pl.DataFrame) -> None:
        self.records = records

    def address_counts(self) -> pl.DataFrame:
        r = self.records
        return (
            pl.concat(
                [
                    r.select(code=pl.col("hukou_town"), address=pl.col("hukou_address")),
                    r.select(code=pl.col("res_town"), address=pl.col("residence_address")),
                ]
            )
            .filter(pl.col("code").is_not_null() & pl.col("address").is_not_null())
            .with_columns(n=pl.lit(1, dtype=pl.Int64))
        )

    def split_candidates(self, as_of: date) -> tuple[pl.DataFrame, pl.DataFrame]:
        hukou_rows = self.records.filter(
            (pl.col("source_kind") == "hukou") & pl.col("hukou_town").is_not_null()
        ).select(HUKOU_TOWN_COLUMNS)
        evidence = residence_evidence(self.records).select(EVIDENCE_COLUMNS)
        if hukou_rows.is_empty() or evidence.is_empty():
            return _empty_split(), evidence.select("person_id", "source", "record_id", "department")
        return split_candidates(hukou_rows, evidence, as_of)

    def register_rows(self) -> pl.DataFrame:
        return self.records.filter(
            (pl.col("source_kind") == "hukou")
            & pl.col("household_id").is_not_null()
            & pl.col("person_id").is_not_null()
        ).select(REGISTER_COLUMNS)

    def roster_rows(self) -> pl.DataFrame:
        return self.records.filter(
            (pl.col("source_kind") == "roster")
            & pl.col("household_id").is_not_null()
            & pl.col("person_id").is_not_null()
        ).select(ROSTER_COLUMNS)

    def minor_shares(self, as_of: date) -> pl.DataFrame:
        generic = self.records.filter((pl.col("source_kind") == "generic") & pl.col("birth").is_not_null())
        return generic.group_by("source").agg(minors=(pl.col("birth") > adult_born_by(as_of)).mean())

    def living(self, pupils: list[str]) -> pl.DataFrame:
        return _living(self.records, pupils)

    def registered_places(self, pupils: list[str]) -> pl.DataFrame:
        return _registered_places(self.records)


class _DuckDBRecords:
    """The same inputs as ``_FrameRecords``, queried from ``person_records_table``.

    Rows come in record_key order, as the frame holds them, so every "first" and every
    order-keeping step below picks the same record either way.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, table: str, standardized: str) -> None:
        self.con = con
        self.table = table
        self.standardized = standardized

    def _rows(self, columns: tuple[str, ...], where: str, params: dict | None = None) -> pl.DataFrame:
        select = ", ".join(columns)
        return self.con.execute(
            f"select {select} from {self.table} where {where} order by record_key", params or {}
        ).pl()

    def address_counts(self) -> pl.DataFrame:
        std = _StandardizedSql(self.con, self.standardized)
        return self.con.execute(
            f"""
            select code, left(address, {ADDRESS_PREFIX_CHARS}) as address, count(*) as n
            from (
                select
                    {std.township("hukou_township", "hukou_region")} as code,
                    {std.column("hukou_address")} as address
                from {self.standardized} s
                union all
                select
                    {std.township("residence_township", "residence_region")},
                    {std.column("residence_address")}
                from {self.standardized} s
            )
            where code is not null and address is not null
            group by all
            """
        ).pl()

    def split_candidates(self, as_of: date) -> tuple[pl.DataFrame, pl.DataFrame]:
        """``split_candidates`` in SQL: the residence evidence (most of the city's records)
        stays in DuckDB; only the people found split and their records come back.

        One small query per step, each into a temporary table: DuckDB spills those, where one
        query holding its CTEs and ordered aggregates ran out of a 1 GB limit at ten million
        records (on the 100k city the steps pass in 30 MB, the single query needed 60 MB).
        """
        steps = {
            # Each person's freshest register record with a township, as the frame's sort picks it.
            "__renhu_hukou_of": f"""
                select person_id, hukou_town, source, household_id, department, record_id,
                    registered_at as hukou_registered_at
                from {self.table}
                where source_kind = 'hukou' and hukou_town is not null and person_id is not null
                qualify row_number() over (
                    partition by person_id order by fresh desc nulls last, source, record_id
                ) = 1
            """,
            # Each person's freshest residence evidence: the township they live in (only people
            # with a register township can be split).
            "__renhu_freshest": f"""
                select person_id, res_town as live_town from ({self._evidence()}) e
                semi join __renhu_hukou_of using (person_id)
                qualify row_number() over (
                    partition by person_id order by fresh desc nulls last, kind_priority, source, record_id
                ) = 1
            """,
            # Registered in one township, living in another. Someone registered in two
            # households (一人多户) living at either is not split. A register township equal to
            # the live one is such a record itself: that test first, so the register is searched
            # for the few people left.
            "__renhu_elsewhere": f"""
                select h.*, f.live_town
                from __renhu_hukou_of h
                join __renhu_freshest f using (person_id)
                where h.hukou_town <> f.live_town
                and not exists (
                    select 1 from {self.table} t
                    where t.source_kind = 'hukou' and t.person_id = h.person_id and t.hukou_town = f.live_town
                )
            """,
            # The person's last evidence anywhere else than that township.
            "__renhu_last_elsewhere": f"""
                select e.person_id, max(e.fresh) as last_elsewhere
                from ({self._evidence()}) e
                join __renhu_elsewhere f on e.person_id = f.person_id and e.res_town <> f.live_town
                group by e.person_id
            """,
            # The records of the present stay: at that township, dated on or after it.
            "__renhu_at_live": f"""
                select e.record_key, e.person_id, e.source, e.record_id, e.department,
                    e.registered_at, e.fresh
                from ({self._evidence()}) e
                join __renhu_elsewhere f on e.person_id = f.person_id and e.res_town = f.live_town
                left join __renhu_last_elsewhere l on l.person_id = e.person_id
                where l.last_elsewhere is null or e.fresh is null or e.fresh >= l.last_elsewhere
            """,
            # Since when the records of the present stay place them there.
            "__renhu_since": """
                select person_id, min(registered_at) as since, max(fresh) as seen
                from __renhu_at_live
                group by person_id
            """,
            # Away from the register's township only since the hukou was registered there.
            "__renhu_split": """
                select * from (
                    select h.*,
                        case when s.since is not null
                            then greatest(s.since, coalesce(h.hukou_registered_at, s.since)) end as since,
                        s.seen
                    from __renhu_elsewhere h
                    left join __renhu_since s using (person_id)
                )
                where coalesce(since, hukou_registered_at) is null
                or coalesce(since, hukou_registered_at) <= $cutoff
            """,
        }
        try:
            for table, query in steps.items():
                params = {"cutoff": as_of - timedelta(days=SPLIT_MIN_DAYS)} if "$cutoff" in query else {}
                self.con.execute(f"create or replace temp table {table} as {query}", params)
            split = self.con.execute("select * from __renhu_split").pl()
            at_live = self.con.execute(
                """
                select a.person_id, a.source, a.record_id, a.department
                from __renhu_at_live a
                semi join __renhu_split s using (person_id)
                order by a.record_key
                """
            ).pl()
        finally:
            for table in steps:
                self.con.execute(f"drop table if exists {table}")
        return split, at_live

    def _evidence(self) -> str:
        """``residence_evidence`` as a query."""
        return (
            f"select * from {self.table}"
            " where source_kind <> 'hukou' and person_id is not null and res_town is not null"
        )

    def register_rows(self) -> pl.DataFrame:
        return self._rows(
            REGISTER_COLUMNS, "source_kind = 'hukou' and household_id is not null and person_id is not null"
        )

    def roster_rows(self) -> pl.DataFrame:
        return self._rows(
            ROSTER_COLUMNS, "source_kind = 'roster' and household_id is not null and person_id is not null"
        )

    def minor_shares(self, as_of: date) -> pl.DataFrame:
        counts = self.con.execute(
            f"""
            select source, count(*) filter (where birth > $born_by) as minors, count(*) as dated
            from {self.table}
            where source_kind = 'generic' and birth is not null
            group by source
            """,
            {"born_by": adult_born_by(as_of)},
        ).pl()
        # The share is divided here, as polars' mean of a boolean column divides it.
        return counts.select(
            "source", minors=pl.col("minors").cast(pl.Float64) / pl.col("dated").cast(pl.Float64)
        )

    _LIVING = (
        "(source_kind = 'rental' or list_contains($pupils, source))"
        " and person_id is not null and res_town is not null"
    )

    def living(self, pupils: list[str]) -> pl.DataFrame:
        return self._rows(LIVING_COLUMNS, self._LIVING, {"pupils": pupils})

    def registered_places(self, pupils: list[str]) -> pl.DataFrame:
        # Only the places of people who rent or attend school matter to the check.
        return self.con.execute(
            f"""
            select distinct person_id, town from (
                select person_id, res_town as town from {self.table}
                where source_kind = 'residence' and res_town is not null
                union all
                select person_id, hukou_town from {self.table}
                where source_kind = 'hukou' and hukou_town is not null
            )
            where person_id is not null
              and person_id in (select person_id from {self.table} where {self._LIVING})
            """,
            {"pupils": pupils},
        ).pl()


_SQL_TYPES = {pl.String: "varchar", pl.Date: "date"}
# The standardized columns the working table carries as they are (the addresses, the widest,
# are read from the standardized table by ``address_counts`` alone).
_TABLE_PLAIN_COLUMNS: tuple[str, ...] = (
    "source",
    "record_id",
    "name",
    "household_id",
    "relation_to_head",
    "hukou_region",
    "registered_at",
    "id_region",
)


class _StandardizedSql:
    """SQL for ``person_records``' columns over the standardized table (alias ``s``)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, standardized: str) -> None:
        self.present = {row[0] for row in con.execute(f"describe {standardized}").fetchall()}

    def column(self, c: str) -> str:
        """A column the table lacks reads as null, as ``person_records`` adds it."""
        return f's."{c}"' if c in self.present else f"cast(null as {_SQL_TYPES[_RECORD_SCHEMA[c]]})"

    def township(self, code: str, region: str) -> str:
        return f"coalesce({self.column(code)}, case when length({self.column(region)}) = 9 then {self.column(region)} end)"


@contextmanager
def person_records_table(
    con: duckdb.DuckDBPyConnection,
    *,
    standardized: str = "int_persons_standardized",
    entity_map: str = "entity_map",
    name: str = "__renhu_person_records",
) -> Iterator[str]:
    """A temporary table of ``person_records`` over the run's tables, dropped on leaving.

    The columns the checks and the rates read: ``record_key``, ``_TABLE_PLAIN_COLUMNS``,
    ``department`` and ``source_kind`` filled as the frame fills them, ``person_id`` (joined
    on record_key: null for a record the entity map lacks) and the derived ``birth``,
    ``sex_any``, ``fresh``, ``hukou_town``, ``res_town``, ``kind_priority``. A column the
    standardized table lacks reads as null. Made once, so the dozen queries of the checks
    and the rates scan it instead of joining the entity map again each time (through a view
    each query cost 0.3 s more at a million records). DuckDB spills it past its memory limit.
    """
    std = _StandardizedSql(con, standardized)
    priority = " ".join(f"when '{kind}' then {rank}" for kind, rank in _KIND_PRIORITY.items())
    con.execute(
        f"""
        create or replace temp table {name} as
        select
            s.record_key,
            {", ".join(f'{std.column(c)} as "{c}"' for c in _TABLE_PLAIN_COLUMNS)},
            coalesce({std.column("department")}, s.source) as department,
            coalesce({std.column("source_kind")}, 'generic') as source_kind,
            e.person_id,
            coalesce({std.column("birth_date")}, {std.column("id_birth_date")}) as birth,
            coalesce({std.column("sex")}, {std.column("id_sex")}) as sex_any,
            coalesce({std.column("updated_at")}, {std.column("registered_at")}) as fresh,
            {std.township("hukou_township", "hukou_region")} as hukou_town,
            {std.township("residence_township", "residence_region")} as res_town,
            cast(case coalesce({std.column("source_kind")}, 'generic') {priority} else 5 end as tinyint)
                as kind_priority
        from {standardized} s
        left join {entity_map} e on e.record_key = s.record_key
        """
    )
    try:
        yield name
    finally:
        con.execute(f"drop table if exists {name}")
