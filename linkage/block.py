"""Blocking: candidate pairs from several passes, run in DuckDB.

A pass keys each record (identity number, name pinyin + birth date, ...: one SQL file,
``int_block_keys_<pass>.sql``, per pass) and pairs the records sharing a key (one SQL
template for every pass, :func:`pass_sql`). No pass alone reaches every true pair; their union does, and
still compares a tiny share of all pairs. A block larger than ``max_block_size`` (a
shared office phone, a placeholder id 000000...) is skipped by that pass and reported:
one such block of 50 000 records would otherwise make 1.25e9 pairs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import polars as pl

from linkage.dates import one_slip_apart_expr

if TYPE_CHECKING:
    from linkage.records import PreparedRecords

SQL_DIR = Path(__file__).resolve().parent.parent / "sql" / "intermediate"

# Reserved name of the prepared records relation the pass SQL reads.
LINK_RECORDS = "__renhu_link_records"
# Reserved name of the keys of tonight's new and changed records, on an incremental night.
CHANGED_RECORDS = "__renhu_changed_records"
# Reserved names of the link records of those records, and of one pass's keys of them.
CHANGED_LINK_RECORDS = "__renhu_changed_link_records"
CHANGED_BLOCK_KEYS = "__renhu_changed_block_keys"
# Reserved name (with _<pass>) of the stored keys of the blocks those keys name.
CHANGED_BLOCKS_STORED = "__renhu_changed_blocks_stored"


@dataclass(frozen=True)
class BlockingPass:
    """One blocking pass, declared as data.

    Most passes only say how a record is keyed: ``int_block_keys_<name>.sql`` gives
    (record_key, block_key), and :func:`pass_sql` turns the keys into the pass's pairs
    the same way for every such pass (block sizes, the cap, the self-join). ``cap_divisor``
    caps this pass's blocks at ``max_block_size // cap_divisor``; ``several_keys``: a record
    may hold several keys, so a pair can meet in several blocks and is listed once;
    ``latin_pairs``: only pairs where a side's ``latin`` key column is true.
    A pass with ``own_pairs`` (``int_pairs_<name>.sql``) builds its pairs itself.
    ``keys_stored``: with `StoredBlockKeys`, the pass's keys are kept in the run's database
    (table ``int_block_keys_<name>``) and only new and changed records are keyed on a later
    night. For the passes whose keying is string work (several name forms, regions,
    initials, addresses: 16 s of 18 at ten million records); a pass keyed by one column
    keys every record each night in well under a second, less than its table would cost
    to write on a full night and to keep. Never for a pass whose keys of one record depend
    on other records.

    ``apart_by_ids``: the pass leaves out a pair whose two records each carry their own
    valid id and the two ids differ. Classification would rule such a pair
    ``different_valid_ids`` whatever else agrees (linkage.classify.apply_rules), and
    clustering keeps two valid ids apart by itself (linkage.cluster), so the pair
    would be compared only to be discarded. Most candidate pairs of the coarse
    passes are such pairs: namesakes, family members sharing an address or a phone, people
    of one surname born on one day in one county, whose number grows as the square of the
    city.
    """

    name: str
    description: str
    several_keys: bool = False
    cap_divisor: int = 1
    latin_pairs: bool = False
    own_pairs: bool = False
    apart_by_ids: bool = True
    keys_stored: bool = False

    @property
    def table(self) -> str:
        return f"int_pairs_{self.name}"

    @property
    def keys_table(self) -> str:
        """The table the pass's keys are kept in between nights (`StoredBlockKeys`)."""
        return f"int_block_keys_{self.name}"

    @property
    def stored(self) -> bool:
        return self.keys_stored and not self.own_pairs

    @property
    def file(self) -> Path:
        return SQL_DIR / (f"{self.table}.sql" if self.own_pairs else f"int_block_keys_{self.name}.sql")

    def sql(self) -> str:
        return self.file.read_text(encoding="utf-8")


# Order fixes the bit of each pass in int_pairs_blocked.passes.
BLOCKING_PASSES: tuple[BlockingPass, ...] = (
    BlockingPass("id_number", "same identity number", apart_by_ids=False),
    BlockingPass("id_near", "identity numbers one mistyped digit or one adjacent swap apart", own_pairs=True),
    BlockingPass("name_pinyin_birth", "same full-name pinyin and birth date"),
    BlockingPass("pinyin_sorted_birth", "same sorted name syllables and birth date (romanized either order)",
                 several_keys=True, keys_stored=True),
    BlockingPass("surname_birth_region", "same surname pinyin, birth date and county", several_keys=True,
                 keys_stored=True),
    BlockingPass("name_id_birth", "same name and birth-date digits of the id"),
    BlockingPass("phone", "same phone number"),
    # Keys only the birth dates some latin-script record holds: a new such record would
    # need records that did not change keyed anew, so its keys are not stored.
    BlockingPass("name_token_birth", "a romanized name sharing one word with the other name, and the same birth date",
                 several_keys=True, latin_pairs=True),
    BlockingPass("name_pinyin", "same full-name pinyin in the same county, any birth date (capped at a tenth of the block limit)",
                 several_keys=True, cap_divisor=10, keys_stored=True),
    BlockingPass("initials_birth", "same name initials and birth date", keys_stored=True),
    BlockingPass("address_birth", "addresses starting alike (4 characters) and the same birth date", several_keys=True,
                 keys_stored=True),
)

DEFAULT_MAX_BLOCK_SIZE = 100

# The record's own valid id as the passes that leave out pairs of two different ones read
# it (BlockingPass.apart_by_ids): its 15-digit form, as the comparison's exact level
# (linkage.compare.id_to_15) reads it, hashed. A collision only keeps a pair the rules part.
# A column of the link records, carried in each pass's keys: a join per pass to a table
# of ids held one more hash table of ten million rows, and ran DuckDB out of memory at 10M.
OWN_ID_SQL = (
    "case when id_own and id_number is not null then hash(case when length(id_number) = 18 "
    "then substr(id_number, 1, 6) || substr(id_number, 9, 9) else id_number end) end"
)

# Columns of int_persons_standardized that linkage reads; a frame lacking some (FEBRL,
# a source with few fields) gets them as nulls.
STD_COLUMN_TYPES: dict[str, pl.DataType] = {
    "record_key": pl.Int64,
    "source": pl.String,
    "record_id": pl.String,
    "name": pl.String,
    "name_script": pl.String,
    "surname": pl.String,
    "given_name": pl.String,
    "name_pinyin": pl.String,
    "surname_pinyin": pl.String,
    "name_pinyin_sorted": pl.String,
    "id_number": pl.String,
    "id_type": pl.String,
    "id_valid": pl.Boolean,
    "id_birth_date": pl.Date,
    "id_sex": pl.String,
    "id_region": pl.String,
    "birth_date": pl.Date,
    "sex": pl.String,
    "phone": pl.String,
    "hukou_address": pl.String,
    "residence_address": pl.String,
    "hukou_region": pl.String,
    "residence_region": pl.String,
}


# What a caller needs to load for linkage: nothing else of the standardized table is read.
LINK_COLUMNS: tuple[str, ...] = tuple(STD_COLUMN_TYPES)


@dataclass(frozen=True)
class StoredBlockKeys:
    """The stored passes' block keys, kept in the run's database from night to night.

    Keying a record costs string work (pinyin forms, splits, unions of its regions): at
    ten million records the passes spent ~18 s keying every record, on a night that paired
    only the 1% that changed. Kept, a night keys only its new and changed records.

    A stored key belongs to a record's ``link_ref``, not its record_key: ingest numbers the
    rows anew each night, while a record's link_ref stays as long as its standardized row
    does (int_persons_standardized.link_ref), so unchanged records' keys never move.

    ``link_refs``: a relation of tonight's records with their ``link_ref`` and ``record_key``.
    ``retired``: a relation of the ``link_ref`` of every record gone or changed since the
    keys were stored; each stored table then loses those and gains tonight's changed
    records' keys. None: every stored table is built anew from tonight's records, whose
    record_key must then equal their link_ref.
    """

    link_refs: str
    retired: str | None = None

    @property
    def build(self) -> bool:
        return self.retired is None


def stored_keys_version(passes: tuple[BlockingPass, ...] = BLOCKING_PASSES) -> str:
    """A digest of everything a stored key depends on: the stored passes and their SQL, the
    link records' SQL and its polars twin (a full night past three million records prepares
    them in polars), and the own-id hash. Stored keys of another digest are built anew."""
    import inspect

    digest = hashlib.sha256(OWN_ID_SQL.encode())
    digest.update((SQL_DIR / "int_link_records.sql").read_bytes())
    digest.update(inspect.getsource(prepare_link_records).encode())
    for bp in passes:
        if bp.stored:
            digest.update(bp.name.encode())
            digest.update(bp.file.read_bytes())
    return digest.hexdigest()[:16]


@dataclass
class BlockingResult:
    pairs: pl.DataFrame  # record_key_l, record_key_r, passes (bit mask over BLOCKING_PASSES)
    report: list[dict]  # per pass: pass, description, pairs, largest_block, capped_blocks, capped_records


def with_std_columns(std: pl.DataFrame) -> pl.DataFrame:
    """Add, as nulls, the standardized columns linkage reads and the frame lacks; type them as linkage expects."""
    missing = [pl.lit(None, dtype=dtype).alias(col) for col, dtype in STD_COLUMN_TYPES.items() if col not in std.columns]
    out = std.with_columns(missing) if missing else std
    wrong = [pl.col(c).cast(t, strict=False) for c, t in STD_COLUMN_TYPES.items() if out.schema[c] != t]
    return out.with_columns(wrong) if wrong else out


def prepare_link_records(std: pl.DataFrame) -> pl.DataFrame:
    """One row per record with the fields blocking and comparison use.

    ``birth`` is the record's birth date, else the one its valid id carries; ``sex``
    likewise. ``id_own`` is a valid id that is the record's own (not ``id_foreign``).
    ``*_region6`` are the counties the record names (household register, residence, id),
    since a person's sources legitimately disagree on where they are.
    """
    s = with_std_columns(std)
    id_number = pl.col("id_number")
    id_birth_part = (
        pl.when(id_number.str.len_chars() == 18)
        .then(id_number.str.slice(6, 8))
        .when(id_number.str.len_chars() == 15)
        .then(pl.lit("19") + id_number.str.slice(6, 6))
        .otherwise(None)
    )
    region6 = [
        pl.col(c).str.slice(0, 6) for c in ("hukou_region", "residence_region", "id_region")
    ]
    # An id whose birth date no slip reconciles with the record's own (two of year, month,
    # day differ, not a day/month swap) is someone else's: a child registered with a
    # parent's number. It still flags the shared number, but does not speak for the record.
    # A differing year is a slip only one typed digit or one swap away (linkage.dates).
    bd, ibd = pl.col("birth_date"), pl.col("id_birth_date")
    swapped = (bd.dt.year() == ibd.dt.year()) & (bd.dt.month() == ibd.dt.day()) & (bd.dt.day() == ibd.dt.month())
    id_foreign = ~((bd == ibd) | one_slip_apart_expr(bd, ibd) | swapped)
    # Compact pinyin (no spaces) makes ZHUGE WEI meet 诸葛伟 ("zhu ge wei"), whose syllables
    # a romanized spelling runs together. The reordered form puts the other half first: a
    # han name's given syllables before its surname (as Wei Zhuge is written), a latin
    # name's last word first (its surname, when written given-name first).
    words = pl.col("name_pinyin").str.split(" ")
    n_surname = pl.col("surname").str.len_chars()
    han_reordered = pl.concat_str(
        words.list.slice(n_surname).list.join(""), words.list.slice(0, n_surname).list.join("")
    )
    latin_reordered = pl.concat_str(words.list.last(), words.list.slice(0, words.list.len() - 1).list.join(""))
    reordered = (
        pl.when(pl.col("name_script") == "han")
        .then(pl.when(pl.col("surname").is_not_null()).then(han_reordered))
        .otherwise(pl.when(words.list.len() > 1).then(latin_reordered))
    )
    return s.select(
        pl.col("record_key").cast(pl.Int64),
        "source",
        "record_id",
        "name",
        "name_script",
        "surname",
        "given_name",
        "name_pinyin",
        "surname_pinyin",
        "name_pinyin_sorted",
        pl.col("name_pinyin").str.replace_all(" ", "", literal=True).alias("pinyin_compact"),
        reordered.alias("pinyin_reordered"),
        pl.when((pl.col("name_script") == "han") & pl.col("surname").is_not_null())
        .then(words.list.slice(n_surname).list.join(""))
        .alias("given_pinyin"),
        "id_number",
        "id_type",
        pl.col("id_valid").fill_null(False),
        id_foreign.fill_null(False).alias("id_foreign"),
        (pl.col("id_valid").fill_null(False) & ~id_foreign.fill_null(False)).alias("id_own"),
        "id_birth_date",
        pl.coalesce("birth_date", "id_birth_date").alias("birth"),
        pl.coalesce("sex", "id_sex").alias("sex"),
        "phone",
        "hukou_address",
        "residence_address",
        "hukou_region",
        "residence_region",
        "id_region",
        pl.when(id_birth_part.str.contains(r"^\d{8}$")).then(id_birth_part).otherwise(None).alias("id_birth_part"),
        # Plain columns, not a list: a list column costs more to hand to DuckDB than the pass saves.
        region6[0].alias("hukou_region6"),
        region6[1].alias("residence_region6"),
        region6[2].alias("id_region6"),
    )


def _strip_final_select(sql: str, tail: str) -> str:
    body = sql.rstrip().rstrip(";")
    if not body.endswith(tail):
        raise ValueError(f"a blocking pass file must end with '{tail}'")
    return body[: -len(tail)].rstrip()


def _changed(column: str) -> str:
    return f"{column} in (select record_key from {CHANGED_RECORDS})"


def pass_sql(bp: BlockingPass, only_changed: bool = False, stored: StoredBlockKeys | None = None) -> str:
    """The pass's pairs and, in the same query, its block-size figures.

    Rows with ``row_kind`` 0 are pairs (record_key_l < record_key_r); 1 is the largest
    block; 2 a block over ``$max_block_size`` (block_size says how large). Block keys are
    64-bit hashes: a join on integers is several times faster than on strings, and a
    collision (odds ~1e-8 at a million keys) only adds candidate pairs the comparison judges.

    ``only_changed``: only pairs touching a record of ``__renhu_changed_records``, from
    only the blocks holding such a record. Every key is still computed (a scan), but only
    those blocks are sized and joined; a block's size still counts all its members, so
    the pairs are exactly the full pass's pairs that touch a changed record. The figures
    are then those of these blocks.

    ``stored`` (a pass with ``stored`` keys): the keys are read from the pass's keys table
    (`StoredBlockKeys`), in tonight's record keys; when it is updated rather than built, only
    those of the blocks tonight's changed records' keys name (`_store_keys`) are read.
    """
    if bp.own_pairs:
        body = _strip_final_select(bp.sql(), "select * from pairs")
        pairs = "pairs"
        if only_changed:
            # One filter over the pass's pairs (two mark joins): a UNION of two filtered reads
            # would run the pass's whole join twice, since DuckDB inlines the CTE.
            pairs = f"(select * from pairs where {_changed('record_key_l')} or {_changed('record_key_r')})"
        return (
            body
            + f"\nselect 0 as row_kind, record_key_l, record_key_r, block_size from {pairs}"
            " union all select 1, null, null, coalesce(max(block_size), 0) from block_sizes"
            " union all select 2, null, null, block_size from block_sizes where block_size > $max_block_size"
        )
    keys_sql = key_file_sql = bp.sql()
    _strip_final_select(keys_sql, "select * from block_keys")
    reads_table = stored is not None and bp.stored and stored.build
    if reads_table:
        keys_sql = f"select link_ref as record_key, * exclude (link_ref) from {bp.keys_table}"
    elif stored is not None and bp.stored:
        # The stored keys of the blocks a changed record is in (`_store_keys`): the members a
        # pair can come from, each record in tonight's key.
        keys_sql = f"""select r.record_key, k.* exclude (link_ref)
    from {CHANGED_BLOCKS_STORED}_{bp.name} as k inner join {stored.link_refs} as r using (link_ref)"""
    # Materialized: the keys are read twice (sizes, members) and would otherwise be computed
    # twice. A built keys table is only read: a copy of it cost the 10M night 1 seconds.
    keys = f"with block_keys as {'' if reads_table else 'materialized '}(\n" + keys_sql.rstrip().rstrip(";") + "\n)"
    cap = f"greatest($max_block_size // {bp.cap_divisor}, 2)" if bp.cap_divisor != 1 else "$max_block_size"
    latin = ", k.latin" if bp.latin_pairs else ""
    if only_changed:
        keys += f""",

changed_blocks as (
    select distinct block_key from block_keys where {_changed("record_key")}
),

members as (
    select * from block_keys where block_key in (select block_key from changed_blocks)
)"""
        members = "members"
    else:
        members = "block_keys"
    pair_filter = f"\n    where {_changed('l.record_key')} or {_changed('r.record_key')}" if only_changed else ""
    own_id, ids_apart = "", ""
    if bp.apart_by_ids:
        if "own_id" not in key_file_sql:
            raise ValueError(f"{bp.file.name} must carry own_id in its keys: the pass leaves out pairs of two different ids")
        own_id = ", k.own_id"
        ids_apart = " and (l.own_id is null or r.own_id is null or l.own_id = r.own_id)"
    return f"""{keys},

block_sizes as (
    select block_key, count(*) as block_size from {members} group by block_key
),

kept as (
    select k.record_key, k.block_key{latin}{own_id}
    from {members} as k inner join block_sizes as s using (block_key)
    where s.block_size between 2 and {cap}
),

pairs as (
    select {"distinct " if bp.several_keys else ""}l.record_key as record_key_l, r.record_key as record_key_r
    from kept as l
    inner join kept as r
        on l.block_key = r.block_key and l.record_key < r.record_key{ids_apart}{" and (l.latin or r.latin)" if bp.latin_pairs else ""}{pair_filter}
)

select 0 as row_kind, record_key_l, record_key_r, null::bigint as block_size from pairs
union all select 1, null, null, coalesce(max(block_size), 0) from block_sizes
union all select 2, null, null, block_size from block_sizes where block_size > $max_block_size
"""


# Columns of the prepared records the passes read (besides the addresses' first characters).
BLOCKING_COLUMNS = (
    "record_key", "name", "name_script", "name_pinyin", "name_pinyin_sorted", "pinyin_compact", "pinyin_reordered",
    "surname_pinyin", "id_number", "id_valid", "id_own", "birth", "phone", "id_birth_part",
    "hukou_region6", "residence_region6", "id_region6",
)


def run_blocking(
    con: duckdb.DuckDBPyConnection,
    records: pl.DataFrame | PreparedRecords,
    max_block_size: int = DEFAULT_MAX_BLOCK_SIZE,
    passes: tuple[BlockingPass, ...] = BLOCKING_PASSES,
    changed_keys: pl.Series | None = None,
    stored: StoredBlockKeys | None = None,
) -> BlockingResult:
    """Run every pass over ``records`` (from :func:`prepare_link_records`, as a frame or as
    a `linkage.records.PreparedRecords` table) and union the pairs.

    With ``changed_keys``, only the pairs that touch one of those records are kept: the
    blocks are still keyed and sized over every record (a block's cap depends on all its
    members), but no pair between two unchanged records is formed. The report's pair
    counts are then tonight's new candidates.

    ``stored``: the stored passes' keys are kept in (or read from) their tables in ``con``
    (`StoredBlockKeys`); updating them needs ``changed_keys``. The pairs are the same.

    Pass tables are TEMP tables of ``con``: they never land in the run's DuckDB file.
    """
    if stored is not None and not stored.build and changed_keys is None:
        raise ValueError("stored block keys are updated on a night that pairs only its changed records")
    if changed_keys is not None and not len(changed_keys) and (stored is None or not stored.build):
        # Nothing new or changed (a night run again on the same extracts): no pair can touch
        # a changed record, and keying every record for nothing took ~21 s at 10M. Records
        # gone since still leave the stored keys.
        if stored is not None:
            for bp in passes:
                if bp.stored:
                    _retire_keys(con, bp, stored)
            con.execute("checkpoint")  # as below: written rather than held in memory
        return BlockingResult(
            pairs=pl.DataFrame(schema={"record_key_l": pl.Int64, "record_key_r": pl.Int64, "passes": pl.Int32}),
            report=[_pass_report(bp, 0, 0, 0, 0, max_block_size) for bp in passes],
        )
    # Materialised once: every pass scans it, and a registered frame is re-read per scan.
    # Only the columns the passes read: handing long address strings to DuckDB costs seconds.
    if isinstance(records, pl.DataFrame):
        blocking_frame = records.select(
            *BLOCKING_COLUMNS,
            pl.col("hukou_address").str.slice(0, 4).alias("hukou_address"),
            pl.col("residence_address").str.slice(0, 4).alias("residence_address"),
        )
        con.register(f"{LINK_RECORDS}_frame", blocking_frame)
        con.execute(f"create or replace temp table {LINK_RECORDS} as select *, {OWN_ID_SQL} as own_id from {LINK_RECORDS}_frame")
        con.unregister(f"{LINK_RECORDS}_frame")
    elif records.blocking_ready:
        # Already what the passes read (int_link_records.sql and own_id): a view, no copy.
        con.execute(f"create or replace temp view {LINK_RECORDS} as select * from {records.table}")
    else:
        # Prepared records in DuckDB with every field (linkage.records.PreparedRecords): copied.
        con.execute(
            f"create or replace temp table {LINK_RECORDS} as select {', '.join(BLOCKING_COLUMNS)}, "
            f"substr(hukou_address, 1, 4) as hukou_address, substr(residence_address, 1, 4) as residence_address, "
            f"{OWN_ID_SQL} as own_id "
            f"from {records.table}"
        )
    only_changed = changed_keys is not None
    if only_changed:
        con.register(f"{CHANGED_RECORDS}_frame", pl.DataFrame({"record_key": changed_keys.cast(pl.Int64)}))
        con.execute(f"create or replace temp table {CHANGED_RECORDS} as select * from {CHANGED_RECORDS}_frame")
        con.unregister(f"{CHANGED_RECORDS}_frame")
    report: list[dict] = []
    params = {"max_block_size": max_block_size}
    try:
        if stored is not None and not stored.build:
            con.execute(
                f"create or replace temp table {CHANGED_LINK_RECORDS} as select * from {LINK_RECORDS} "
                f"where {_changed('record_key')}"
            )
            for bp in passes:
                if bp.stored:
                    _store_keys(con, bp, stored)
            # The deletes and inserts hold the row groups they touched in memory until a
            # checkpoint writes them: ~600 MB at 10M records, which left the clustering's
            # sort of every record out of DuckDB's 1 GB. Written now, in 0.5 s.
            con.execute("checkpoint")
        for bp in passes:
            if stored is not None and bp.stored and stored.build:
                _store_keys(con, bp, stored)
            con.execute(
                f"create or replace temp table {bp.table}__all as {pass_sql(bp, only_changed, stored)}", params
            )
            con.execute(
                f"create or replace temp view {bp.table} as "
                f"select record_key_l, record_key_r from {bp.table}__all where row_kind = 0"
            )
            n_pairs, largest, capped_blocks, capped_records = con.execute(
                f"""
                select
                    count(*) filter (where row_kind = 0),
                    coalesce(max(block_size) filter (where row_kind = 1), 0),
                    count(*) filter (where row_kind = 2),
                    coalesce(sum(block_size) filter (where row_kind = 2), 0)
                from {bp.table}__all
                """
            ).fetchone()
            report.append(_pass_report(bp, n_pairs, largest, capped_blocks, capped_records, max_block_size))
        if passes == BLOCKING_PASSES:
            union_sql = (SQL_DIR / "int_pairs_blocked.sql").read_text(encoding="utf-8")
        else:
            bits = {p.name: 1 << i for i, p in enumerate(BLOCKING_PASSES)}
            parts = " union all ".join(
                f"select record_key_l, record_key_r, {bits[p.name]} as pass_bit from {p.table}" for p in passes
            )
            union_sql = (
                f"select record_key_l, record_key_r, bit_or(pass_bit) as passes from ({parts}) "
                "group by record_key_l, record_key_r"
            )
        pairs = _union_pairs(con, union_sql, [bp.table for bp in passes], sum(r["pairs"] for r in report))
    finally:
        for bp in passes:
            con.execute(f"drop view if exists {bp.table}")
            con.execute(f"drop table if exists {bp.table}__all")
        if isinstance(records, pl.DataFrame) or not records.blocking_ready:
            con.execute(f"drop table if exists {LINK_RECORDS}")
        else:
            con.execute(f"drop view if exists {LINK_RECORDS}")
        con.execute(f"drop table if exists {CHANGED_RECORDS}")
        con.execute(f"drop table if exists {CHANGED_LINK_RECORDS}")
        for bp in passes:
            con.execute(f"drop table if exists {CHANGED_BLOCKS_STORED}_{bp.name}")
    return BlockingResult(pairs=pairs, report=report)


def _retire_keys(con: duckdb.DuckDBPyConnection, bp: BlockingPass, stored: StoredBlockKeys) -> None:
    """The stored keys of the records gone or changed leave the pass's keys table."""
    con.execute(f"delete from {bp.keys_table} where link_ref in (select link_ref from {stored.retired})")


def _store_keys(con: duckdb.DuckDBPyConnection, bp: BlockingPass, stored: StoredBlockKeys) -> None:
    """Build the pass's keys table from every record, or bring it to tonight's records: the
    keys of records gone or changed leave it, the changed records' keys come in, and the
    stored keys of the blocks they name are kept for `pass_sql` (``__renhu_changed_blocks_stored_<pass>``)."""
    keys_sql = bp.sql().rstrip().rstrip(";")
    if stored.build:
        con.execute(
            f"create or replace table {bp.keys_table} as "
            f"select record_key as link_ref, * exclude (record_key) from ({keys_sql})"
        )
        return
    _retire_keys(con, bp, stored)
    con.execute(
        f"create or replace temp table {CHANGED_BLOCK_KEYS} as {keys_sql.replace(LINK_RECORDS, CHANGED_LINK_RECORDS)}"
    )
    con.execute(
        f"insert into {bp.keys_table} by name select r.link_ref, k.* exclude (record_key) "
        f"from {CHANGED_BLOCK_KEYS} as k inner join {stored.link_refs} as r using (record_key)"
    )
    # A table of its own, so that joining it to tonight's keys builds its hash table from
    # these few rows: within one query DuckDB took the ten million link_refs for that side
    # and ran out of its 1 GB at 10M records.
    con.execute(
        f"create or replace temp table {CHANGED_BLOCKS_STORED}_{bp.name} as select * from {bp.keys_table} "
        f"where block_key in (select block_key from {CHANGED_BLOCK_KEYS})"
    )
    con.execute(f"drop table {CHANGED_BLOCK_KEYS}")


def _pass_report(bp: BlockingPass, pairs: int, largest_block: int, capped_blocks: int, capped_records: int,
                 max_block_size: int) -> dict:
    """A pass's line of the blocking report (metrics.json's linkage.blocking)."""
    return {
        "pass": bp.name,
        "description": bp.description,
        "pairs": int(pairs),
        "largest_block": int(largest_block),
        "capped_blocks": int(capped_blocks),
        "capped_records": int(capped_records),
        "max_block_size": max_block_size,
    }


# Pass pairs one grouping of the union takes at most: at 10M records the passes find 112M
# pairs, and one group-by over them all ran DuckDB out of its 1 GB inside the flow.
UNION_PART_PAIRS = 20_000_000


def _union_pairs(
    con: duckdb.DuckDBPyConnection, union_sql: str, pass_tables: list[str], pass_pairs: int
) -> pl.DataFrame:
    """The passes' pairs without doubles, in (record_key_l, record_key_r) order; over
    ``UNION_PART_PAIRS`` pass pairs, grouped a range of left keys at a time (the filter on
    a grouping key reaches every pass table, so each part reads only its own pairs)."""
    select = f"select record_key_l, record_key_r, cast(passes as integer) as passes from ({union_sql})"
    parts = -(-pass_pairs // UNION_PART_PAIRS)
    if parts <= 1:
        return con.execute(f"{select} order by record_key_l, record_key_r").pl()
    left_keys = " union all ".join(f"select min(record_key_l) as low, max(record_key_l) as high from {t}" for t in pass_tables)
    low, high = con.execute(f"select min(low), max(high) from ({left_keys})").fetchone()
    width = (high - low) // parts + 1
    frames = [
        con.execute(
            f"{select} where record_key_l >= $start and record_key_l < $stop order by record_key_l, record_key_r",
            {"start": start, "stop": start + width},
        ).pl()
        for start in range(low, high + 1, width)
    ]
    return pl.concat(frames)


def pass_names(mask: int) -> list[str]:
    """The passes whose bit is set in an int_pairs_blocked.passes value."""
    return [p.name for i, p in enumerate(BLOCKING_PASSES) if mask & (1 << i)]
