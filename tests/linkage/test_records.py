"""PreparedRecords: the prepared link records in DuckDB give what the polars path gives."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl
import pytest

from linkage.block import BLOCKING_COLUMNS, prepare_link_records
from linkage.classify import term_frequencies
from linkage.compare import pair_frame
from linkage.link import link_records
from linkage.records import FRAME_COLUMNS, PreparedRecords
from linkage.standardize import standardize_records
from tests.linkage.test_link import background, raw_frame


def _standardized_table(std: pl.DataFrame) -> duckdb.DuckDBPyConnection:
    """A new DuckDB holding ``std`` as the flow's int_persons_standardized."""
    con = duckdb.connect()
    con.register("std_frame", std)
    con.execute("create table int_persons_standardized as select * from std_frame")
    return con


@pytest.fixture(scope="module")
def std() -> pl.DataFrame:
    return standardize_records(raw_frame(background(120, seed=3)))


def test_from_table_in_slices_equals_the_frame(std: pl.DataFrame) -> None:
    con = _standardized_table(std)
    # Slices of 37 rows: many key ranges, the last one short (the DuckDB-only form, as at 10M).
    from_table = PreparedRecords.from_table(con, "int_persons_standardized", chunk_rows=37, max_in_memory=0)
    expected = prepare_link_records(std).sort("record_key")
    assert not from_table.in_memory
    assert len(from_table) == std.height
    assert from_table.select(*expected.columns).equals(expected)
    # Small enough for polars: the comparison fields in a frame; the blocking and clustering
    # ones derived in DuckDB by int_link_records.sql, to the values the polars path gives.
    in_memory = PreparedRecords.from_table(con, "int_persons_standardized")
    assert in_memory.in_memory and in_memory.frame_complete and in_memory.blocking_ready
    assert in_memory.select(*FRAME_COLUMNS).equals(expected.select(FRAME_COLUMNS))
    in_duckdb = con.execute(f"select * from {in_memory.table} order by record_key").pl()
    # own_id, which the polars path leaves to blocking, is there for the passes: exactly where
    # the record's own valid id is.
    assert in_duckdb["own_id"].is_not_null().equals(in_duckdb["id_own"].rename("own_id"))
    in_duckdb = in_duckdb.drop("own_id")
    cut = expected.with_columns(pl.col(c).str.slice(0, 4) for c in ("hukou_address", "residence_address"))
    assert in_duckdb.equals(cut.select(in_duckdb.columns))
    assert set(BLOCKING_COLUMNS) <= set(in_duckdb.columns)


def test_link_records_sql_equals_the_polars_preparation_on_edge_cases() -> None:
    rows = [
        # a compound surname written in han, its reordering; an id whose birth date is a parent's
        {"name": "诸葛伟", "name_script": "han", "surname": "诸葛", "name_pinyin": "zhu ge wei",
         "id_number": "330602196001021234", "id_valid": True, "id_birth_date": date(1960, 1, 2),
         "birth_date": date(1990, 5, 6)},
        # a latin name of three words; a 15-digit id; day and month swapped against the id
        {"name": "ANNA MARIA LEE", "name_script": "latin", "name_pinyin": "anna maria lee",
         "id_number": "330602900102123", "id_valid": True, "id_birth_date": date(1990, 1, 2),
         "birth_date": date(1990, 2, 1)},
        # one word; an id with letters where the birth digits are; no script
        {"name": "X", "name_pinyin": "x", "id_number": "3306021990AB02123X", "id_valid": False},
        # a han name without surname; nothing else
        {"name": "伟", "name_script": "han", "name_pinyin": "wei"},
        {"name": None},
    ]
    std = pl.DataFrame(
        [{"record_key": i, "source": "s", "record_id": str(i), **r} for i, r in enumerate(rows)],
        schema_overrides={"birth_date": pl.Date, "id_birth_date": pl.Date, "id_valid": pl.Boolean},
    )
    expected = prepare_link_records(std)
    records = PreparedRecords.from_frame(duckdb.connect(), std)
    in_duckdb = records.con.execute(f"select * from {records.table} order by record_key").pl()
    cut = expected.with_columns(pl.col(c).str.slice(0, 4) for c in ("hukou_address", "residence_address"))
    assert in_duckdb.drop("own_id").equals(cut.select(in_duckdb.drop("own_id").columns))
    assert in_duckdb["pinyin_reordered"].to_list()[:4] == ["weizhuge", "leeannamaria", None, None]
    assert in_duckdb["id_own"].to_list() == [False, True, False, False, False]
    # The one own valid id is the one the passes' different-ids filter sees.
    assert in_duckdb["own_id"].is_not_null().to_list() == [False, True, False, False, False]


def test_a_partial_frame_holds_only_the_asked_records(std: pl.DataFrame) -> None:
    con = _standardized_table(std)
    records = PreparedRecords.from_table(con, "int_persons_standardized", load_frame=False)
    assert not records.in_memory
    keys = std["record_key"].sort()
    records.load_frame(keys.gather([3, 7, 11]))
    assert records.frame.height == 3 and not records.frame_complete
    pairs = pl.DataFrame({"record_key_l": [keys[3]], "record_key_r": [keys[11]]})
    whole = PreparedRecords.from_frame(duckdb.connect(), std)
    assert records.pair_frame(pairs).equals(whole.pair_frame(pairs))
    with pytest.raises(ValueError):
        records.pair_frame(pl.DataFrame({"record_key_l": [keys[3]], "record_key_r": [keys[4]]}))
    # Clustering still reads every record, from the DuckDB table.
    assert records.select("record_key", "id_own").equals(whole.select("record_key", "id_own"))


@pytest.mark.parametrize("in_memory", [True, False])
def test_pair_frame_and_term_frequencies_equal_the_polars_ones(std: pl.DataFrame, in_memory: bool) -> None:
    records = prepare_link_records(std)
    stored = PreparedRecords.from_frame(duckdb.connect(), std, in_memory=in_memory)
    assert stored.in_memory == in_memory
    keys = records["record_key"].to_list()
    # Unsorted, repeated, and one key that is no record (its side stays empty).
    pairs = pl.DataFrame(
        {"record_key_l": [keys[5], keys[0], keys[5], keys[2]], "record_key_r": [keys[9], keys[3], keys[9], 10_000]}
    )
    assert stored.pair_frame(pairs).equals(pair_frame(pairs, records).select(stored.pair_frame(pairs).columns))
    assert set(stored.pair_frame(pairs).columns) == set(pair_frame(pairs, records).columns)
    for column in ("name_pinyin", "id_number"):
        mine = stored.term_frequencies(column).sort("value")
        theirs = term_frequencies(records, column).sort("value")
        assert mine["value"].equals(theirs["value"])
        assert (mine["tf"] - theirs["tf"]).abs().max() < 1e-12


def test_linking_from_a_table_equals_linking_the_frame(std: pl.DataFrame) -> None:
    con = _standardized_table(std)
    from_table = link_records(con, "int_persons_standardized", None)
    from_frame = link_records(duckdb.connect(), std, None)
    assert from_table.entity_map.equals(from_frame.entity_map)
    assert from_table.pairs.equals(from_frame.pairs)


def test_pairs_compared_by_key_blocks_equal_the_polars_path(std: pl.DataFrame, monkeypatch) -> None:
    from linkage import link
    from linkage.block import run_blocking
    from linkage.link import LinkageSettings, compare_in_chunks

    records = prepare_link_records(std)
    pairs = run_blocking(duckdb.connect(), records).pairs
    comparisons = LinkageSettings().comparisons
    tf_tables = {c.tf_column: term_frequencies(records, c.tf_column) for c in comparisons if c.tf_column}
    expected = compare_in_chunks(pairs, records, comparisons, tf_tables, chunk_size=50)
    # Blocks of 40 records: the pairs fall in many (left block, right block) groups.
    monkeypatch.setattr(link, "PAIR_KEY_BLOCK_ROWS", 40)
    stored = PreparedRecords.from_frame(duckdb.connect(), std, in_memory=False)
    assert len(link._pair_groups(pairs, stored)) > 3
    blocked = compare_in_chunks(pairs, stored, comparisons, tf_tables, chunk_size=50)
    assert (blocked.gammas == expected.gammas).all()
    assert (blocked.rule == expected.rule).all()
    assert (blocked.tf_adjustment == expected.tf_adjustment).all()


def test_linking_past_the_in_memory_limit_equals_linking_in_memory(std: pl.DataFrame, monkeypatch) -> None:
    # A city too large for the polars frame (10M records) keeps every field in DuckDB and
    # compares by DuckDB joins: same persons and pairs, on a full and an incremental night.
    from linkage import records as records_module
    from linkage.link import LinkState

    con = _standardized_table(std)
    in_memory = link_records(con, "int_persons_standardized", None)
    monkeypatch.setattr(records_module, "IN_MEMORY_MAX_RECORDS", 0)
    in_duckdb = link_records(con, "int_persons_standardized", None)
    assert in_duckdb.entity_map.equals(in_memory.entity_map)
    assert in_duckdb.pairs.equals(in_memory.pairs)
    changed = std["record_key"].sort().gather(list(range(0, std.height, 7)))
    kept = in_memory.pairs.filter(~pl.col("record_key_l").is_in(changed.implode()) & ~pl.col("record_key_r").is_in(changed.implode()))
    state = LinkState(model=in_memory.model, tf_tables=in_memory.tf_tables, pairs=kept, changed_keys=changed)
    again_duckdb = link_records(con, "int_persons_standardized", None, state=state)
    monkeypatch.setattr(records_module, "IN_MEMORY_MAX_RECORDS", 3_000_000)
    again_memory = link_records(con, "int_persons_standardized", None, state=state)
    assert again_duckdb.pairs.equals(again_memory.pairs)
    assert again_duckdb.entity_map.equals(again_memory.entity_map)
    assert again_memory.pairs.equals(in_memory.pairs)


def test_chunks_compared_side_by_side_equal_one_at_a_time(std: pl.DataFrame) -> None:
    from linkage.block import run_blocking
    from linkage.link import LinkageSettings, compare_in_chunks, random_pairs

    records = PreparedRecords.from_frame(duckdb.connect(), std)
    assert records.in_memory
    # The candidates (mostly matches) and random pairs (mostly not): rows of many kinds.
    blocked = run_blocking(duckdb.connect(), prepare_link_records(std)).pairs.select("record_key_l", "record_key_r")
    pairs = pl.concat([blocked, random_pairs(records, 100, seed=7).select(blocked.columns)]).unique().sort(blocked.columns)
    comparisons = LinkageSettings().comparisons
    tf_tables = {c.tf_column: records.term_frequencies(c.tf_column) for c in comparisons if c.tf_column}
    # Chunks of 7 pairs: dozens of chunks, finishing in any order across the threads.
    assert len(pairs) > 20 * 7
    one = compare_in_chunks(pairs, records, comparisons, tf_tables, chunk_size=7, workers=1)
    for workers in (2, 3):
        side_by_side = compare_in_chunks(pairs, records, comparisons, tf_tables, chunk_size=7, workers=workers)
        assert (side_by_side.gammas == one.gammas).all()
        assert (side_by_side.rule == one.rule).all()
        assert (side_by_side.tf_adjustment == one.tf_adjustment).all()
    # Not all the same row: a misplaced chunk would show.
    assert len({tuple(row) for row in one.gammas.tolist()}) > 5


def test_the_frame_read_in_many_batches_equals_the_frame_read_in_one(
    std: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import linkage.records as records_module

    con = _standardized_table(std)
    whole = PreparedRecords.from_table(con, "int_persons_standardized")
    batches_read: list[int] = []
    next_batch = records_module._next_batch

    def counted(reader):
        batch = next_batch(reader)
        if batch is not None:
            batches_read.append(len(batch))
        return batch

    # Batches of 16 rows: the next one is read while this one is prepared, and none is lost.
    monkeypatch.setattr(records_module, "FRAME_BATCH_ROWS", 16)
    monkeypatch.setattr(records_module, "_next_batch", counted)
    in_batches = PreparedRecords.from_table(con, "int_persons_standardized")
    assert len(batches_read) > 1 and sum(batches_read) == std.height
    assert in_batches.select(*FRAME_COLUMNS).equals(whole.select(*FRAME_COLUMNS))


def test_someone_elses_id_is_told_alike_in_sql_polars_and_python() -> None:
    """id_own (a valid id not someone else's) from int_link_records.sql, from
    prepare_link_records and from linkage.dates.one_slip_apart agree on random birth dates: years a digit, a swap or decades
    apart, day and month equal, swapped or not."""
    import random
    from datetime import timedelta

    from linkage.dates import one_slip_apart

    rng = random.Random(5)
    pairs = []
    for _ in range(3000):
        birth = date(1900, 1, 1) + timedelta(rng.randint(0, 45000))
        kind = rng.randrange(5)
        if kind == 0:  # one year digit typed wrong
            digits = list(f"{birth.year:04d}")
            digits[rng.randrange(4)] = str(rng.randrange(10))
            other = (int("".join(digits)), birth.month, birth.day)
        elif kind == 1:  # two neighbouring year digits swapped
            digits = list(f"{birth.year:04d}")
            p = rng.randrange(3)
            digits[p], digits[p + 1] = digits[p + 1], digits[p]
            other = (int("".join(digits)), birth.month, birth.day)
        elif kind == 2:  # another year, same day and month
            other = (rng.randint(1900, 2020), birth.month, birth.day)
        elif kind == 3:  # day and month swapped
            other = (birth.year, birth.day, birth.month)
        else:
            other = (rng.randint(1900, 2020), rng.randint(1, 12), rng.randint(1, 28))
        try:
            id_birth = date(*other)
        except ValueError:
            continue
        pairs.append((birth, id_birth))
    std = pl.DataFrame(
        [{"record_key": i, "source": "s", "record_id": str(i), "name": "王伟", "id_number": "330602199001011234",
          "id_valid": True, "birth_date": b, "id_birth_date": ib} for i, (b, ib) in enumerate(pairs)],
        schema_overrides={"birth_date": pl.Date, "id_birth_date": pl.Date},
    )
    # Every id is valid: a record's id is its own exactly where it is not someone else's.
    polars_own = prepare_link_records(std).sort("record_key").get_column("id_own").to_list()
    records = PreparedRecords.from_frame(duckdb.connect(), std)
    sql_own = records.con.execute(f"select id_own from {records.table} order by record_key").pl()
    swapped = [b.year == ib.year and b.month == ib.day and b.day == ib.month for b, ib in pairs]
    python_own = [b == ib or s or one_slip_apart(b, ib) for (b, ib), s in zip(pairs, swapped, strict=True)]
    assert sql_own.get_column("id_own").to_list() == polars_own == python_own
    assert 0 < sum(python_own) < len(pairs)


def test_an_incremental_night_past_the_in_memory_limit_compares_from_a_frame_of_its_pairs_records(
    std: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 1% night at 10M records needs the comparison fields of a few hundred thousand
    # records: loaded into polars, not fetched by a DuckDB join per chunk of pairs.
    from linkage import records as records_module
    from linkage.link import LinkState

    con = _standardized_table(std)
    full = link_records(con, "int_persons_standardized", None)
    monkeypatch.setattr(records_module, "IN_MEMORY_MAX_RECORDS", 0)
    loaded: list[int] = []
    load_frame = PreparedRecords.load_frame

    def spy(self: PreparedRecords, keys: pl.Series | None = None) -> None:
        loaded.append(-1 if keys is None else len(keys))
        load_frame(self, keys)

    monkeypatch.setattr(PreparedRecords, "load_frame", spy)
    changed = std["record_key"].sort().head(5)
    kept = full.pairs.filter(~pl.col("record_key_l").is_in(changed.implode()) & ~pl.col("record_key_r").is_in(changed.implode()))
    state = LinkState(model=full.model, tf_tables=full.tf_tables, pairs=kept, changed_keys=changed)
    again = link_records(con, "int_persons_standardized", None, state=state)
    assert len(loaded) == 1 and 0 < loaded[0] < std.height
    assert again.pairs.equals(full.pairs)
    assert again.entity_map.equals(full.entity_map)


@pytest.mark.parametrize("in_memory_max", [3_000_000, 0])
def test_a_night_with_nothing_changed_keeps_last_nights_pairs_and_persons(
    std: pl.DataFrame, monkeypatch: pytest.MonkeyPatch, in_memory_max: int
) -> None:
    from linkage import records as records_module
    from linkage.link import LinkState

    con = _standardized_table(std)
    full = link_records(con, "int_persons_standardized", None)
    monkeypatch.setattr(records_module, "IN_MEMORY_MAX_RECORDS", in_memory_max)
    state = LinkState(model=full.model, tf_tables=full.tf_tables, pairs=full.pairs,
                      changed_keys=pl.Series("record_key", [], dtype=pl.Int64))
    again = link_records(con, "int_persons_standardized", full.entity_map.select("source", "record_id", "person_id"),
                         state=state)
    assert again.metrics["pairs_scored_tonight"] == 0
    assert again.pairs.equals(full.pairs)
    assert again.entity_map.equals(full.entity_map)
    assert again.id_changes.is_empty()
