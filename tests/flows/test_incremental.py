"""An incremental night: only new and changed rows are re-standardized and re-linked,
and the result is what a full night over the same extracts gives."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows import stages
from flows.nightly import open_run
from flows.settings import Settings

SOCIAL_INSURANCE = "extracts/social_insurance.parquet"


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    from linkage.demo_city import generate_city

    return generate_city(tmp_path_factory.mktemp("city"), persons=1500, seed=11).out_dir


def run_to_link(sources: Path, out: Path, published: bool = True, **overrides) -> stages.RunContext:
    """A night's stages up to link; ``published``: its person ids kept, as publish keeps them."""
    settings = replace(Settings(), show_progress=False, **overrides)
    ctx = open_run(sources, out, None, settings)
    stages.ledger_start(ctx)
    for stage in (stages.ingest, stages.standardize, stages.link):
        stages.ledger_record_stage(ctx, stage(ctx))
    if published:
        stages.commit_person_ids(ctx)
    return ctx


def change_extract(city: Path, accepted: set[str]) -> tuple[set[str], set[str]]:
    """Move 30 people of the social insurance extract and add 20 records (new ids, copied people)."""
    path = city / SOCIAL_INSURANCE
    frame = pl.read_parquet(path)
    movable = frame.filter(pl.col("grbh").cast(pl.String).is_in(accepted) & pl.col("jzdz").is_not_null())
    moved = movable.head(30).get_column("grbh").cast(pl.String).to_list()
    frame = frame.with_columns(
        pl.when(pl.col("grbh").cast(pl.String).is_in(moved))
        .then(pl.col("jzdz").cast(pl.String) + "附9号")
        .otherwise(pl.col("jzdz"))
        .alias("jzdz")
    )
    copies = movable.slice(100, 20).with_columns((pl.lit("NEW") + pl.col("grbh").cast(pl.String)).alias("grbh"))
    pl.concat([frame, copies.cast(frame.schema)]).write_parquet(path)
    return set(moved), set(copies.get_column("grbh").to_list())


def standardized(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    return con.execute(
        "select * exclude (raw_row_hash, link_ref) from int_persons_standardized order by source, record_id"
    ).pl()


def partition(con: duckdb.DuckDBPyConnection) -> set[frozenset[tuple[str, str]]]:
    rows = con.execute("select source, record_id, person_id from entity_map").fetchall()
    persons: dict[str, set[tuple[str, str]]] = {}
    for source, record_id, person_id in rows:
        persons.setdefault(person_id, set()).add((source, record_id))
    return {frozenset(members) for members in persons.values()}


@pytest.mark.slow
def test_second_night_reuses_unchanged_rows_and_equals_a_full_night(city: Path, tmp_path: Path) -> None:
    work = tmp_path / "city"
    shutil.copytree(city, work)
    night1 = run_to_link(work / "sources.yaml", tmp_path / "incremental")
    assert night1.refresh == "full"
    registry_before = dict(
        ((s, r), p) for s, r, p in night1.con.execute("select source, record_id, person_id from entity_map").fetchall()
    )
    night1.con.close()

    accepted = {r for (s, r) in registry_before if s == "social_insurance"}
    moved, added = change_extract(work, accepted)
    night2 = run_to_link(work / "sources.yaml", tmp_path / "incremental")
    std_stage, link_stage = night2.stages[1], night2.stages[2]
    assert night2.refresh == "incremental"
    # Exactly the moved and the added rows were standardized again, and only they re-linked.
    assert std_stage.details["restandardized"] == len(moved) + len(added)
    assert link_stage.details["mode"] == "incremental"
    assert link_stage.details["relinked"] == len(moved) + len(added)
    changed_keys = night2.con.execute(
        "select source, record_id from int_persons_standardized "
        "where record_key not in (select record_key from std_reused)"
    ).fetchall()
    assert {r for s, r in changed_keys if s == "social_insurance"} == moved | added

    full = run_to_link(work / "sources.yaml", tmp_path / "full")
    assert full.refresh == "full"
    assert standardized(night2.con).equals(standardized(full.con))
    assert partition(night2.con) == partition(full.con)
    # Person ids carried forward: every record of night 1 whose person did not merge or split keeps its id.
    after = dict(
        ((s, r), p) for s, r, p in night2.con.execute("select source, record_id, person_id from entity_map").fetchall()
    )
    kept = sum(after[key] == person for key, person in registry_before.items() if key in after)
    assert kept / len(registry_before) > 0.99
    # The registry: one row per record ever seen; new records first seen tonight, the rest earlier.
    registry = night2.con.execute(
        "select source, record_id, first_seen_run, last_seen_run from person_registry"
    ).pl()
    assert registry.height == registry.select("source", "record_id").n_unique() == len(after)
    first_seen = {(s, r): run for s, r, run, _ in registry.iter_rows()}
    assert {first_seen[("social_insurance", r)] for r in added} == {night2.run_id}
    assert {first_seen[("social_insurance", r)] for r in moved} == {night1.run_id}
    assert set(registry["last_seen_run"].to_list()) == {night2.run_id}
    metrics = night2.standardization_metrics.sort("source", "field")
    assert metrics.equals(full.standardization_metrics.sort("source", "field"))
    night2.con.close()
    full.con.close()


def test_full_refresh_restandardizes_and_relinks_everything(city: Path, tmp_path: Path) -> None:
    work = tmp_path / "city"
    shutil.copytree(city, work)
    run_to_link(work / "sources.yaml", tmp_path / "out").con.close()
    again = run_to_link(work / "sources.yaml", tmp_path / "out", full_refresh=True)
    assert again.refresh == "full"
    assert again.stages[1].details["why"] == "full refresh asked for"
    assert again.stages[1].details["restandardized"] == again.stages[1].rows_in
    assert again.stages[2].details["mode"] == "full"
    again.con.close()


def test_a_large_change_relinks_everything(city: Path, tmp_path: Path, monkeypatch) -> None:
    # Social insurance holds about a fifth of the records: a tenth is the bar here.
    monkeypatch.setattr(stages, "INCREMENTAL_MAX_CHANGED_SHARE", 0.1)
    work = tmp_path / "city"
    shutil.copytree(city, work)
    run_to_link(work / "sources.yaml", tmp_path / "out").con.close()
    # Every social insurance row changes: far over the incremental share.
    path = work / SOCIAL_INSURANCE
    frame = pl.read_parquet(path)
    frame.with_columns((pl.col("jzdz").cast(pl.String) + "1号").alias("jzdz")).write_parquet(path)
    large = run_to_link(work / "sources.yaml", tmp_path / "out")
    share = frame.height / large.stages[1].rows_in
    assert share > stages.INCREMENTAL_MAX_CHANGED_SHARE
    assert large.refresh == "full"
    assert "new or changed" in large.stages[1].details["why"]
    large.con.close()


def run_to_standardize(sources: Path, out: Path, **overrides) -> stages.RunContext:
    settings = replace(Settings(), show_progress=False, **overrides)
    ctx = open_run(sources, out, None, settings)
    stages.ledger_start(ctx)
    for stage in (stages.ingest, stages.standardize):
        stages.ledger_record_stage(ctx, stage(ctx))
    return ctx


def test_incremental_night_takes_tonights_provenance_for_unchanged_rows(city: Path, tmp_path: Path) -> None:
    # The table is changed in place on an incremental night: unchanged rows must still come
    # out with tonight's keys and a department renamed in the sources file, and so with
    # tonight's row numbers and load batch (raw_records', through int_persons_raw_values).
    work = tmp_path / "city"
    shutil.copytree(city, work)
    run_to_standardize(work / "sources.yaml", tmp_path / "incremental").con.close()
    sources = (work / "sources.yaml").read_text(encoding="utf-8")
    assert "department: 公安局户政科" in sources
    (work / "sources.yaml").write_text(sources.replace("department: 公安局户政科", "department: 公安局户籍科"), encoding="utf-8")
    path = work / SOCIAL_INSURANCE
    frame = pl.read_parquet(path)
    # Ten rows fewer at the top: every later row of the extract moves up ten row numbers.
    frame.slice(10).write_parquet(path)

    night2 = run_to_standardize(work / "sources.yaml", tmp_path / "incremental")
    assert night2.refresh == "incremental"
    assert night2.stages[1].details["restandardized"] == 0
    con = night2.con
    assert con.execute(
        "select count(*) from int_persons_standardized s join raw_records r using (record_key) "
        "where s.source is distinct from r.source or s.record_id is distinct from r.record_id "
        "or s.department is distinct from r.department"
    ).fetchone()[0] == 0
    shown = con.execute(
        "select s.record_id, v.row_number, v.load_batch from int_persons_standardized s "
        "join int_persons_raw_values v using (record_key) where s.source = 'social_insurance'"
    ).pl()
    assert shown.get_column("load_batch").unique().to_list() == [night2.run_id]
    tonight = con.execute(
        "select record_id, row_number from raw_records where source = 'social_insurance'"
    ).pl()
    assert shown.select("record_id", "row_number").sort("record_id").equals(tonight.sort("record_id"))
    assert con.execute("select count(*) from int_persons_standardized").fetchone()[0] == con.execute(
        "select count(*) from raw_records").fetchone()[0]
    assert con.execute("select count(*) from int_persons_standardized where department = '公安局户籍科'").fetchone()[0] > 0

    full = run_to_standardize(work / "sources.yaml", tmp_path / "full")
    assert standardized(con).equals(standardized(full.con))
    assert night2.standardization_metrics.sort("source", "field").equals(
        full.standardization_metrics.sort("source", "field")
    )
    con.close()
    full.con.close()


def test_stored_table_leaves_the_raw_cells_to_raw_records(city: Path, tmp_path: Path) -> None:
    from linkage.fields import RECORD_PROVENANCE_COLUMNS
    from linkage.standardize import RAW_VALUE_COLUMNS, standardize_records

    settings = replace(Settings(), show_progress=False)
    ctx = open_run(city / "sources.yaml", tmp_path / "out", None, settings)
    stages.ledger_start(ctx)
    for stage in (stages.ingest, stages.standardize):
        stages.ledger_record_stage(ctx, stage(ctx))
    con = ctx.con
    stored = con.execute("select * from int_persons_standardized").pl()
    assert not (set(RAW_VALUE_COLUMNS) | set(RECORD_PROVENANCE_COLUMNS)) & set(stored.columns)
    # The view shows, by record_key, exactly the raw copies and the provenance standardize
    # carried for each row.
    made = standardize_records(con.execute("select * from raw_records").pl(), as_of=ctx.as_of)
    raw_columns = ["record_key", *RECORD_PROVENANCE_COLUMNS, *RAW_VALUE_COLUMNS]
    shown = con.execute(f"select {', '.join(raw_columns)} from int_persons_raw_values order by record_key").pl()
    assert shown.height == stored.height > 1000
    assert shown.equals(made.select(raw_columns).sort("record_key"))
    # The metrics from the stored flags are those of the rows with their raw copies.
    assert ctx.standardization_metrics.equals(
        stages._metrics_from_table(con, "int_persons_standardized")
    )
    ctx.con.close()


def test_a_night_stopped_after_standardize_does_not_misplace_last_nights_pairs(city: Path, tmp_path: Path) -> None:
    # A night killed (or failed) after its standardize stage and before its link stage wrote
    # the scored pairs leaves int_persons_standardized in its keys and int_pairs_scored in the
    # night before's. The next night must not carry those pairs over by tonight's key map: a
    # shift of the keys (ten rows fewer at the top of an extract) would pair other records.
    work = tmp_path / "city"
    shutil.copytree(city, work)
    run_to_link(work / "sources.yaml", tmp_path / "out").con.close()
    path = work / SOCIAL_INSURANCE
    pl.read_parquet(path).slice(10).write_parquet(path)
    stopped = run_to_standardize(work / "sources.yaml", tmp_path / "out")
    assert stopped.refresh == "incremental"
    stopped.con.close()  # the process dies here: no link, no publish

    after = run_to_link(work / "sources.yaml", tmp_path / "out")
    full = run_to_link(work / "sources.yaml", tmp_path / "fresh")
    assert partition(after.con) == partition(full.con)
    # Its own rows are still reused; only the pairs are all scored again.
    assert after.refresh == "incremental"
    assert after.stages[2].details["mode"] == "full"
    assert standardized(after.con).equals(standardized(full.con))
    assert after.standardization_metrics.sort("source", "field").equals(
        full.standardization_metrics.sort("source", "field")
    )
    after.con.close()
    full.con.close()

    # And the night after that one is incremental again.
    again = run_to_link(work / "sources.yaml", tmp_path / "out")
    assert again.refresh == "incremental"
    assert again.stages[2].details["mode"] == "incremental"
    again.con.close()


def test_a_record_id_given_to_someone_else_leaves_the_person_their_id(city: Path, tmp_path: Path) -> None:
    # A department reuses a record id for a stranger: the person's other record, unchanged,
    # keeps the person id; the stranger gets a new one.
    import json

    work = tmp_path / "city"
    shutil.copytree(city, work)
    night1 = run_to_link(work / "sources.yaml", tmp_path / "out")
    em = night1.con.execute("select source, record_id, person_id from entity_map").pl()
    night1.con.close()
    pairs = em.filter(pl.len().over("person_id") == 2)
    # A person of two records whose roster record sorts first (a tie is settled on it by default).
    person = pairs.filter(pl.col("source") == "civil_affairs_roster").get_column("person_id")[0]
    roster_id = pairs.filter((pl.col("person_id") == person) & (pl.col("source") == "civil_affairs_roster"))["record_id"][0]
    other = pairs.filter((pl.col("person_id") == person) & (pl.col("source") != "civil_affairs_roster")).row(0)[:2]
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    body = "11010119800101001"
    stranger_id = body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights, strict=True)) % 11]
    path = work / "extracts" / "civil_affairs_roster.jsonl"
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if isinstance(row, dict) and row.get("memberId") == roster_id:
            row.update(name="司马相如", idCard=stranger_id, gender="男", birthday="1980-01-01")
            line = json.dumps(row, ensure_ascii=False)
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    night2 = run_to_link(work / "sources.yaml", tmp_path / "out")
    assert night2.stages[2].details["mode"] == "incremental"
    after = dict(((s, r), p) for s, r, p in night2.con.execute(
        "select source, record_id, person_id from entity_map").fetchall())
    night2.con.close()
    assert after[other] == person
    assert after[("civil_affairs_roster", roster_id)] != person


def test_metrics_say_why_a_night_is_full_or_incremental(city: Path, tmp_path: Path) -> None:
    work = tmp_path / "city"
    shutil.copytree(city, work)
    reasons = []
    for overrides in ({}, {}, {"full_refresh": True}):
        ctx = run_to_link(work / "sources.yaml", tmp_path / "out", **overrides)
        reasons.append((ctx.linkage.metrics["refresh"], ctx.linkage.metrics["refresh_reason"]))
        ctx.con.close()
    records = reasons[1][1].split(" of ")[1].split(" ")[0]
    assert reasons == [
        ("full", "no earlier night in this database"),
        ("incremental", f"0 of {records} records new or changed"),
        ("full", "full refresh asked for"),
    ]


def test_a_night_that_does_not_publish_leaves_the_person_ids_as_published(city: Path, tmp_path: Path) -> None:
    """A one-night bad edit merges a person into another and the night does not publish:
    the registry stays as the last published night left it (link wrote the failed night's
    merge into it), and put right the next night, every record has its published id."""
    from collections import Counter

    work = tmp_path / "city"
    shutil.copytree(city, work)
    night1 = run_to_link(work / "sources.yaml", tmp_path / "out")
    published = dict(
        ((s, r), p) for s, r, p in night1.con.execute("select source, record_id, person_id from entity_map").fetchall()
    )
    registry = night1.con.execute("select * from person_registry order by all").fetchall()
    night1.con.close()
    records_of = Counter(published.values())
    held = sorted((r, p) for (s, r), p in published.items() if s == "social_insurance")
    loner = next(r for r, p in held if records_of[p] == 1)
    donor = next(r for r, p in held if records_of[p] >= 2)

    path = work / SOCIAL_INSURANCE
    original = path.read_bytes()
    frame = pl.read_parquet(path)
    record_id = pl.col("grbh").cast(pl.String)
    # The loner's row now holds the donor's person (the record id stays the loner's).
    copy = frame.filter(record_id == donor).with_columns(pl.lit(loner).cast(frame.schema["grbh"]).alias("grbh"))
    pl.concat([frame.filter(record_id != loner), copy]).write_parquet(path)
    failed = run_to_link(work / "sources.yaml", tmp_path / "out", published=False)
    merged = dict(
        ((s, r), p) for s, r, p in failed.con.execute("select source, record_id, person_id from entity_map").fetchall()
    )
    assert merged[("social_insurance", loner)] == published[("social_insurance", donor)]
    assert failed.con.execute("select * from person_registry order by all").fetchall() == registry
    failed.con.close()

    path.write_bytes(original)
    night3 = run_to_link(work / "sources.yaml", tmp_path / "out")
    after = dict(
        ((s, r), p) for s, r, p in night3.con.execute("select source, record_id, person_id from entity_map").fetchall()
    )
    night3.con.close()
    assert after == published


POLICE_HUKOU = "extracts/police_hukou.csv"


def renumber_township(city: Path, code: str, new_code: str, rows: int, every: int = 1) -> int:
    """Give `rows` of the register's records with township `code` the code `new_code`
    (every `every`-th of them), as a department moving to a newer code table does.

    The file is gb18030 with planted undecodable bytes: edited as bytes, only the code
    cell (the last but one) of whole CRLF lines."""
    path = city / POLICE_HUKOU
    lines = path.read_bytes().split(b"\r\n")
    cell = re.compile(rb"," + code.encode() + rb",(?=[^,]*$)")
    seen = changed = 0
    for i, line in enumerate(lines):
        if changed < rows and cell.search(line):
            if seen % every == 0:
                lines[i] = cell.sub(b"," + new_code.encode() + b",", line)
                changed += 1
            seen += 1
    path.write_bytes(b"\r\n".join(lines))
    return changed


def register_codes(city: Path) -> Counter:
    lines = (city / POLICE_HUKOU).read_bytes().split(b"\r\n")
    return Counter(m.decode() for line in lines for m in re.findall(rb",(\d{9}),(?=[^,]*$)", line))


def test_incremental_night_maps_a_township_code_of_another_vintage_as_a_full_night(city: Path, tmp_path: Path) -> None:
    # A quarter of one township's register records carry a newer code for it: the full night
    # learns that both codes are one township (their addresses name it), and an incremental
    # night gives rows that newly carry the newer code the same township from the stored context.
    work = tmp_path / "city"
    shutil.copytree(city, work)
    code, count = register_codes(work).most_common(1)[0]
    new_code = code[:6] + "9" + code[7:]
    assert new_code not in register_codes(work)
    first = renumber_township(work, code, new_code, rows=count // 4, every=3)
    night1 = run_to_standardize(work / "sources.yaml", tmp_path / "incremental")
    assert night1.refresh == "full"
    assert night1.con.execute("select * from std_region_township_aliases").fetchall() == [(new_code, code)]
    night1.con.close()

    second = renumber_township(work, code, new_code, rows=8)
    codes = register_codes(work)
    assert codes[new_code] == first + second < codes[code]
    night2 = run_to_standardize(work / "sources.yaml", tmp_path / "incremental")
    assert night2.refresh == "incremental"
    assert night2.stages[1].details["restandardized"] == second
    full = run_to_standardize(work / "sources.yaml", tmp_path / "full")
    assert full.refresh == "full"
    for night in (night2, full):
        towns = night.con.execute(
            "select distinct hukou_township from int_persons_standardized where hukou_region = $c", {"c": new_code}
        ).fetchall()
        assert towns == [(code,)]
    assert standardized(night2.con).equals(standardized(full.con))
    night2.con.close()
    full.con.close()


def test_a_date_that_was_in_the_future_is_read_on_a_later_incremental_night(city: Path, tmp_path: Path) -> None:
    # Found in review: a rental registered before its tenant moves in has its 入住日期 after the
    # night's date, which standardization rejects as in the future. An incremental night kept
    # that rejection for the unchanged row after the day had come, where a full night over
    # the same file reads the date: the two differed until the next full night.
    import datetime as dt

    work = tmp_path / "city"
    shutil.copytree(city, work)
    started = dt.datetime.now(dt.UTC)
    move_in = (started.astimezone(stages.CHINA_TIME).date() + dt.timedelta(days=1)).isoformat()
    path = work / "extracts" / "rental_housing.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    fields = lines[1].split(",")
    record_id, fields[7] = fields[0], move_in  # 登记编号, 入住日期
    lines[1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def night(started_at: dt.datetime, **overrides) -> stages.RunContext:
        ctx = open_run(work / "sources.yaml", tmp_path / "out", None, replace(Settings(), show_progress=False, **overrides))
        ctx.started_at = started_at
        stages.ledger_start(ctx)
        for stage in (stages.ingest, stages.standardize):
            stages.ledger_record_stage(ctx, stage(ctx))
        return ctx

    def registered_at(ctx: stages.RunContext):
        return ctx.con.execute(
            "select registered_at from int_persons_standardized where source = 'rental_housing' and record_id = $id",
            {"id": record_id},
        ).fetchone()[0]

    first = night(started)
    assert registered_at(first) is None  # tomorrow: in the future tonight
    first.con.close()
    later = night(started + dt.timedelta(days=3))
    assert later.stages[1].details["mode"] == "incremental"
    assert str(registered_at(later)) == move_in
    later.con.close()


def stored_block_keys(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Each stored blocking pass's keys by record key; none left of a record not there."""
    from tests.linkage.test_block import stored_keys

    return stored_keys(con, "int_persons_standardized")


@pytest.mark.slow
def test_stored_block_keys_follow_the_records_and_equal_a_full_nights(city: Path, tmp_path: Path) -> None:
    # Night 2 keys only its changed records against the block keys kept from night 1: the
    # kept keys are then those a full night over the same extracts stores. A night stopped
    # after standardize leaves them behind, and the next night builds them anew.
    work = tmp_path / "city"
    shutil.copytree(city, work)
    night1 = run_to_link(work / "sources.yaml", tmp_path / "out")
    accepted = {r for (r,) in night1.con.execute(
        "select record_id from entity_map where source = 'social_insurance'").fetchall()}
    night1.con.close()
    change_extract(work, accepted)
    night2 = run_to_link(work / "sources.yaml", tmp_path / "out")
    assert night2.block_keys_reusable and night2.stages[2].details["mode"] == "incremental"
    # Kept, not built: a build makes every link_ref its record's key tonight.
    assert night2.con.execute(
        "select count(*) from int_persons_standardized where link_ref <> record_key").fetchone()[0] >= 50
    full = run_to_link(work / "sources.yaml", tmp_path / "full")
    assert stored_block_keys(night2.con) == stored_block_keys(full.con)
    night2.con.close()
    full.con.close()

    path = work / SOCIAL_INSURANCE
    pl.read_parquet(path).slice(10).write_parquet(path)
    run_to_standardize(work / "sources.yaml", tmp_path / "out").con.close()  # stopped before link
    after = run_to_link(work / "sources.yaml", tmp_path / "out")
    assert after.refresh == "incremental" and not after.block_keys_reusable
    assert after.con.execute(
        "select count(*) from int_persons_standardized where link_ref <> record_key").fetchone()[0] == 0
    fresh = run_to_link(work / "sources.yaml", tmp_path / "fresh")
    assert stored_block_keys(after.con) == stored_block_keys(fresh.con)
    after.con.close()
    fresh.con.close()
