"""Blocking passes: what each finds, the one-slip id neighbourhood, the cap on exploding blocks."""

from __future__ import annotations

from datetime import date

import duckdb
import polars as pl

from linkage.block import BLOCKING_PASSES, pass_names, prepare_link_records, run_blocking

_W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]


def resident_id(first17: str) -> str:
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, _W, strict=True)) % 11]


ID_A = resident_id("33060219900102123")
ID_B = resident_id("33060219900102125")  # twin's id: another valid number


def std(rows: list[dict]) -> pl.DataFrame:
    """Hand-made standardized records: only the fields blocking reads."""
    base = {"source": "s", "name": None, "name_pinyin": None, "name_pinyin_sorted": None, "surname_pinyin": None,
            "id_number": None, "id_valid": None, "birth_date": None, "phone": None, "hukou_region": None,
            "name_script": None}
    data = [{**base, "record_key": i, "record_id": str(i), **r} for i, r in enumerate(rows)]
    return pl.DataFrame(data, schema_overrides={"birth_date": pl.Date, "id_valid": pl.Boolean})


def pairs_of(frame: pl.DataFrame, max_block_size: int = 100):
    result = run_blocking(duckdb.connect(), prepare_link_records(frame), max_block_size)
    found = {(a, b): pass_names(m) for a, b, m in result.pairs.iter_rows()}
    return found, {r["pass"]: r for r in result.report}


def test_one_substitution_and_one_adjacent_swap_are_reached():
    sub = ID_A[:10] + str((int(ID_A[10]) + 3) % 10) + ID_A[11:]
    swap = ID_A[:12] + ID_A[13] + ID_A[12] + ID_A[14:]
    assert swap != ID_A
    frame = std([
        {"id_number": ID_A, "id_valid": True},
        {"id_number": sub, "id_valid": False},
        {"id_number": swap, "id_valid": False},
        {"id_number": ID_B, "id_valid": True},
    ])
    found, _ = pairs_of(frame)
    assert "id_near" in found[(0, 1)]
    assert "id_near" in found[(0, 2)]
    # Two valid ids are never a slip apart: the twins' numbers are not paired by id_near.
    assert (0, 3) not in found
    # The two invalid copies are two slips apart from each other: not this pass's business.
    assert "id_near" not in found.get((1, 2), [])


def test_name_birth_passes_meet_romanized_and_swapped_order():
    frame = std([
        {"name": "张伟", "name_pinyin": "zhang wei", "name_pinyin_sorted": "wei zhang", "birth_date": date(1990, 1, 2)},
        {"name": "WEI ZHANG", "name_pinyin": "wei zhang", "name_pinyin_sorted": "wei zhang",
         "birth_date": date(1990, 1, 2), "name_script": "latin"},
        {"name": "ZHANG WEI", "name_pinyin": "zhang wei", "name_pinyin_sorted": "wei zhang",
         "birth_date": date(1990, 1, 2), "name_script": "latin"},
        {"name": "张伟", "name_pinyin": "zhang wei", "name_pinyin_sorted": "wei zhang", "birth_date": date(1991, 1, 2)},
    ])
    found, _ = pairs_of(frame)
    assert "pinyin_sorted_birth" in found[(0, 1)] and "name_pinyin_birth" not in found[(0, 1)]
    assert "name_pinyin_birth" in found[(0, 2)]
    # Another birth date: reached only through the name alone.
    assert found[(0, 3)] == ["name_pinyin"]


def test_pairs_are_ordered_and_unique():
    frame = std([{"id_number": ID_A, "id_valid": True, "phone": "13900000000"} for _ in range(4)])
    result = run_blocking(duckdb.connect(), prepare_link_records(frame))
    p = result.pairs
    assert len(p) == 6  # 4 records, one block: 4*3/2 pairs, found by two passes, listed once
    assert (p["record_key_l"] < p["record_key_r"]).all()
    assert set(pass_names(p["passes"][0])) == {"id_number", "phone"}


def test_exploding_block_is_capped_and_reported():
    placeholder = "000000000000000000"
    rows = [{"id_number": placeholder, "id_valid": False, "phone": "13800000000"} for _ in range(150)]
    rows += [{"id_number": ID_A, "id_valid": True}, {"id_number": ID_A, "id_valid": True}]
    found, report = pairs_of(std(rows), max_block_size=100)
    # The 150-record block would make 11 175 pairs: skipped, and said so.
    assert report["id_number"]["capped_blocks"] == 1
    assert report["id_number"]["capped_records"] == 150
    assert report["id_number"]["largest_block"] == 150
    assert report["phone"]["capped_blocks"] == 1
    assert report["id_number"]["pairs"] == 1
    assert list(found) == [(150, 151)]


def test_every_pass_has_its_sql_file_named_after_its_table():
    for bp in BLOCKING_PASSES:
        text = bp.sql()
        assert text.startswith(f"-- {bp.file.stem}:")
        assert "Grain:" in text
        tail = "select * from pairs" if bp.own_pairs else "select * from block_keys"
        assert text.rstrip().endswith(tail)


def test_union_bits_follow_the_pass_order():
    import re

    from linkage.block import SQL_DIR

    text = (SQL_DIR / "int_pairs_blocked.sql").read_text(encoding="utf-8")
    bits = {table: int(bit) for bit, table in re.findall(r"(\d+)(?: as pass_bit)? from (int_pairs_\w+)", text)}
    assert bits == {bp.table: 1 << i for i, bp in enumerate(BLOCKING_PASSES)}


def test_changed_records_get_exactly_the_full_passes_pairs_that_touch_them():
    rows = [{"id_number": ID_A, "id_valid": True, "phone": "13900000000"} for _ in range(3)]
    rows += [{"name": "张伟", "name_pinyin": "zhang wei", "name_pinyin_sorted": "wei zhang",
              "birth_date": date(1990, 1, 2)} for _ in range(3)]
    # A capped block stays capped: its size counts every member, not only the changed one.
    rows += [{"id_number": "000000000000000000", "id_valid": False} for _ in range(4)]
    records = prepare_link_records(std(rows))
    full = run_blocking(duckdb.connect(), records, max_block_size=3).pairs
    changed = pl.Series([1, 4, 8], dtype=pl.Int64)
    only = run_blocking(duckdb.connect(), records, max_block_size=3, changed_keys=changed).pairs
    touching = full.filter(pl.col("record_key_l").is_in(changed.to_list()) | pl.col("record_key_r").is_in(changed.to_list()))
    assert only.equals(touching)
    assert len(only) > 0 and len(only) < len(full)


def test_a_night_with_nothing_changed_keys_no_record(monkeypatch):
    # A night run again on the same extracts: no pass runs, and the result is what the passes
    # would give with no changed record (no pairs, no blocks), in the usual form.
    import linkage.block as block_module

    rows = [{"id_number": ID_A, "id_valid": True, "phone": "13900000000"} for _ in range(3)]
    records = prepare_link_records(std(rows))
    some = run_blocking(duckdb.connect(), records, max_block_size=3, changed_keys=pl.Series([1], dtype=pl.Int64))
    assert len(some.pairs) > 0

    def no_pass(*args, **kwargs):
        raise AssertionError("a pass ran on a night with nothing changed")

    monkeypatch.setattr(block_module, "pass_sql", no_pass)
    none = run_blocking(duckdb.connect(), records, max_block_size=3, changed_keys=pl.Series([], dtype=pl.Int64))
    assert none.pairs.is_empty() and none.pairs.schema == some.pairs.schema
    assert [r["pass"] for r in none.report] == [r["pass"] for r in some.report]
    assert {(r["pairs"], r["largest_block"], r["capped_blocks"], r["capped_records"]) for r in none.report} == {(0, 0, 0, 0)}
    assert none.report[0].keys() == some.report[0].keys()


def test_changed_records_of_a_city_get_the_full_passes_pairs_that_touch_them():
    # Every pass over a small city with slips, at a cap tight enough that popular names
    # (and the name pass's tenth of it) cap blocks: tonight's pairs for 10% changed records
    # equal the full night's pairs that touch them, pass bits included.
    import numpy as np

    from linkage.standardize import standardize_records
    from tests.linkage.test_link import background, raw_frame

    records = prepare_link_records(standardize_records(raw_frame(background(400, seed=11))))
    full = run_blocking(duckdb.connect(), records, max_block_size=4)
    keys = records["record_key"].to_numpy()
    changed = pl.Series(np.random.default_rng(5).choice(keys, size=len(keys) // 10, replace=False), dtype=pl.Int64)
    only = run_blocking(duckdb.connect(), records, max_block_size=4, changed_keys=changed)
    touching = full.pairs.filter(pl.col("record_key_l").is_in(changed.implode()) | pl.col("record_key_r").is_in(changed.implode()))
    assert only.pairs.equals(touching)
    assert any(r["capped_blocks"] for r in full.report)
    reached = {name for mask in only.pairs["passes"].to_list() for name in pass_names(mask)}
    assert {"id_number", "name_pinyin_birth", "surname_birth_region", "name_pinyin"} <= reached
    # A record's own blocks are sized over all their members: a capped block stays capped.
    for mine, theirs in zip(only.report, full.report, strict=True):
        assert mine["largest_block"] <= theirs["largest_block"]


def test_union_grouped_in_key_ranges_equals_one_grouping(monkeypatch):
    """Past UNION_PART_PAIRS pass pairs the union is grouped a range of left keys at a
    time (10M records); the pairs, their pass bits and their order must not change."""
    import linkage.block as block_module
    from linkage.standardize import standardize_records
    from tests.linkage.test_link import background, raw_frame

    records = prepare_link_records(standardize_records(raw_frame(background(400, seed=11))))
    whole = run_blocking(duckdb.connect(), records).pairs
    monkeypatch.setattr(block_module, "UNION_PART_PAIRS", 50)
    parted = run_blocking(duckdb.connect(), records).pairs
    assert whole.height > 500  # so the union is grouped in over ten ranges
    assert parted.equals(whole)
    assert parted["passes"].n_unique() > 3


def test_two_different_own_valid_ids_are_not_paired_by_the_other_passes():
    shared = {"name": "张伟", "name_pinyin": "zhang wei", "name_pinyin_sorted": "wei zhang", "surname_pinyin": "zhang",
              "birth_date": date(1990, 1, 2), "phone": "13900000000", "hukou_region": "330602001"}
    typo = ID_A[:10] + str((int(ID_A[10]) + 3) % 10) + ID_A[11:]
    frame = std([
        {**shared, "id_number": ID_A, "id_valid": True},
        {**shared, "id_number": ID_B, "id_valid": True},  # a namesake born the same day: another person
        {**shared},  # no id: may be either of them
        {**shared, "id_number": typo, "id_valid": False},  # a mistyped id speaks for no one
        {**shared, "id_number": ID_A, "id_valid": True},  # the first one again
        {**shared, "id_number": ID_A[:6] + ID_A[8:17], "id_valid": True},  # and in the old 15-digit form
    ])
    found, report = pairs_of(frame)
    assert (0, 1) not in found and (1, 4) not in found and (1, 5) not in found
    # One id in its two forms is one id (as the comparison's exact level reads it): still paired.
    assert {"name_pinyin_birth", "phone"} <= set(found[(0, 5)]) and {"name_pinyin_birth", "phone"} <= set(found[(4, 5)])
    for other in (2, 3):
        assert {"name_pinyin_birth", "phone", "surname_birth_region"} <= set(found[(0, other)])
        assert {"name_pinyin_birth", "phone", "surname_birth_region"} <= set(found[(1, other)])
    assert {"id_number", "name_pinyin_birth", "phone"} <= set(found[(0, 4)])
    # The pass still reports the block it saw: six records, however few pairs it kept.
    assert report["phone"]["largest_block"] == 6


def test_pairs_left_out_for_their_ids_are_the_pairs_the_rules_part():
    # Over a small city with twins, namesakes and shared phones: every pair the passes leave
    # out for two different own valid ids would have been ruled different_valid_ids.
    import dataclasses

    from linkage.link import LinkageSettings, compare_in_chunks
    from linkage.records import PreparedRecords
    from linkage.standardize import standardize_records
    from tests.linkage.test_link import background, raw_frame

    standardized = standardize_records(raw_frame(background(400, seed=11)))
    records = prepare_link_records(standardized)
    every_pair = tuple(dataclasses.replace(bp, apart_by_ids=False) for bp in BLOCKING_PASSES)
    unfiltered = run_blocking(duckdb.connect(), records, passes=every_pair).pairs
    kept = run_blocking(duckdb.connect(), records).pairs
    keys = ["record_key_l", "record_key_r"]
    assert kept.select(keys).join(unfiltered.select(keys), on=keys, how="anti").is_empty()
    left_out = unfiltered.select(keys).join(kept.select(keys), on=keys, how="anti")
    assert left_out.height > 50
    prepared = PreparedRecords.from_frame(duckdb.connect(), standardized)
    comparisons = LinkageSettings().comparisons
    tf_tables = {c.tf_column: prepared.term_frequencies(c.tf_column) for c in comparisons if c.tf_column}
    ruled = compare_in_chunks(left_out, prepared, comparisons, tf_tables).rule
    assert set(ruled.tolist()) == {"different_valid_ids"}


def stored_keys(con: duckdb.DuckDBPyConnection, refs: str) -> dict[str, list[tuple]]:
    """Each stored pass's keys, by tonight's record key; no key is left of a record not there tonight."""
    for bp in BLOCKING_PASSES:
        if bp.stored:
            left = con.execute(f"select count(*) from {bp.keys_table} anti join {refs} using (link_ref)").fetchone()[0]
            assert left == 0, f"{bp.keys_table} keeps {left} keys of records gone or changed"
    return {
        bp.name: con.execute(
            f"select r.record_key, k.* exclude (link_ref) from {bp.keys_table} k join {refs} r using (link_ref) order by all"
        ).fetchall()
        for bp in BLOCKING_PASSES
        if bp.stored
    }


def _built_keys(records: pl.DataFrame) -> dict[str, list[tuple]]:
    from linkage.block import StoredBlockKeys

    con = duckdb.connect()
    con.register("records", records)
    con.execute("create table refs as select record_key as link_ref, record_key from records")
    run_blocking(con, records, max_block_size=4, stored=StoredBlockKeys("refs"))
    return stored_keys(con, "refs")


def test_stored_keys_kept_night_after_night_give_the_pairs_of_keying_every_record():
    # Night 1 builds the stored keys; night 2 renumbers every record, loses some, changes some
    # (each becomes a copy of another record) and adds some. Keying only those against the
    # stored keys gives the pairs and figures of keying every record, and leaves the stored
    # keys as a build from night 2's records would.
    import numpy as np

    from linkage.block import StoredBlockKeys
    from linkage.standardize import standardize_records
    from tests.linkage.test_link import background, raw_frame

    night1 = prepare_link_records(standardize_records(raw_frame(background(400, seed=11))))
    con = duckdb.connect()
    con.register("night1", night1)
    con.execute("create table refs1 as select record_key as link_ref, record_key from night1")
    built = run_blocking(con, night1, max_block_size=4, stored=StoredBlockKeys("refs1"))
    assert built.pairs.equals(run_blocking(duckdb.connect(), night1, max_block_size=4).pairs)
    assert all(rows for rows in stored_keys(con, "refs1").values())

    n = night1.height
    order = np.random.default_rng(3).permutation(n)
    gone, changed, donors, copied = order[:20], order[20:60], order[60:100], order[100:120]
    kept = night1.filter(~pl.col("record_key").is_in(np.concatenate([gone, changed]).tolist()))
    as_changed = night1[donors.tolist()].with_columns(pl.Series("record_key", changed, dtype=pl.Int64))
    added = night1[copied.tolist()].with_columns(pl.Series("record_key", np.arange(n, n + 20), dtype=pl.Int64))
    night2 = pl.concat([kept, as_changed, added]).sample(fraction=1.0, shuffle=True, seed=5)
    # Tonight's keys are new; link_refs stay for unchanged records, changed and new ones get new ones.
    unchanged = pl.col("record_key").is_in(kept["record_key"].implode())
    refs2 = night2.select(
        pl.when(unchanged).then(pl.col("record_key")).otherwise(n + 100 + pl.int_range(pl.len())).alias("link_ref"),
        (1000 + pl.int_range(pl.len())).cast(pl.Int64).alias("record_key"),
    )
    night2 = night2.with_columns(refs2["record_key"]).sort("record_key")
    tonight_changed = refs2.filter(pl.col("link_ref") >= n)["record_key"]
    con.register("refs2_frame", refs2)
    con.execute("create table refs2 as select * from refs2_frame")
    con.register("retired_frame", pl.DataFrame({"link_ref": np.concatenate([gone, changed])}))
    con.execute("create table retired as select * from retired_frame")

    kept_keys = run_blocking(
        con, night2, max_block_size=4, changed_keys=tonight_changed, stored=StoredBlockKeys("refs2", "retired")
    )
    keyed_anew = run_blocking(duckdb.connect(), night2, max_block_size=4, changed_keys=tonight_changed)
    assert len(kept_keys.pairs) > 0
    assert kept_keys.pairs.equals(keyed_anew.pairs)
    assert kept_keys.report == keyed_anew.report
    assert stored_keys(con, "refs2") == _built_keys(night2)

    # Night 3: only records gone. No pass runs, but their keys leave the stored tables.
    night3 = night2.filter(pl.col("record_key") >= 1010)
    con.execute("create table refs3 as select * from refs2 where record_key >= 1010")
    con.execute("create table retired3 as select link_ref from refs2 where record_key < 1010")
    nothing = run_blocking(
        con, night3, max_block_size=4, changed_keys=pl.Series([], dtype=pl.Int64),
        stored=StoredBlockKeys("refs3", "retired3"),
    )
    assert nothing.pairs.is_empty()
    assert stored_keys(con, "refs3") == _built_keys(night3)


def test_stored_keys_version_follows_what_the_keys_are_computed_by(monkeypatch):
    # Keys stored by other pass SQL or another preparation of the records are built anew.
    import linkage.block as block_module
    from linkage.block import stored_keys_version

    before = stored_keys_version()
    assert stored_keys_version() == before
    monkeypatch.setattr(block_module, "OWN_ID_SQL", block_module.OWN_ID_SQL + " ")
    assert stored_keys_version() != before
    monkeypatch.undo()

    def prepare_link_records(std):  # another preparation of the same name
        return std

    monkeypatch.setattr(block_module, "prepare_link_records", prepare_link_records)
    assert stored_keys_version() != before
    monkeypatch.undo()
    unstored = tuple(
        block_module.BlockingPass(bp.name, bp.description, several_keys=bp.several_keys, cap_divisor=bp.cap_divisor,
                                  latin_pairs=bp.latin_pairs, own_pairs=bp.own_pairs, keys_stored=False)
        if bp.name == "initials_birth" else bp
        for bp in BLOCKING_PASSES
    )
    assert stored_keys_version(unstored) != before
