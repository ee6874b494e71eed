"""Validation suites on a small hand-made night: a clean night passes, and each planted
problem is caught by its check with the right severity. Data Docs must not hold any input
identity number or name."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from flows.validation import (
    ValidationSummary,
    create_compared_nights_view,
    headline_markdown,
    load_suites,
    load_thresholds,
    run_validation,
    share_rates_table,
)
from linkage.fields import RAW_VALUES_VIEW
from linkage.sql import create_view

RUN_ID = "20261123T020000Z-ab12cd"
PREVIOUS_RUN_ID = "20261122T020000Z-0f0f0f"
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭"]
GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛"]
CANONICAL = [
    "name", "id_number", "sex", "birth_date", "ethnicity", "phone", "hukou_address", "hukou_region",
    "residence_address", "residence_region", "household_id", "relation_to_head", "house_id", "employer",
    "registered_at", "updated_at",
]  # fmt: skip


def check_character(first17: str) -> str:
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def resident_id(region: str, born: date, sequence: int) -> str:
    first17 = f"{region}{born:%Y%m%d}{sequence:03d}"
    return first17 + check_character(first17)


def make_persons(n: int) -> list[dict]:
    persons = []
    for i in range(n):
        born = date(1950, 1, 1) + timedelta(days=331 * i + 13)
        sequence = 100 + i  # odd/even decides sex
        number = resident_id(["330602", "330603", "330621"][i % 3], born, sequence)
        persons.append(
            {
                "person_id": f"P{i + 1:012x}",
                "id_number": number,
                "name": SURNAMES[i % len(SURNAMES)]
                + GIVEN[(i * 7) % len(GIVEN)]
                + GIVEN[(i * 3 + 1) % len(GIVEN)],
                "birth_date": born,
                "sex": "M" if sequence % 2 else "F",
            }
        )
    return persons


# (source, how many persons it holds from the start of the list, quarantined rows)
SOURCES = [("police_hukou", 40, 2), ("residence", 25, 1), ("health", 18, 0)]


def build_night(con: duckdb.DuckDBPyConnection, persons: list[dict] | None = None) -> dict:
    """Create the flow's tables for one consistent night and return what was put in."""
    persons = persons or make_persons(40)
    raw, std, emap, quarantine, counts, files = [], [], [], [], [], []
    key = 0
    for source, held, rejected in SOURCES:
        for j, person in enumerate(persons[:held]):
            key += 1
            record_id = f"{source[:2].upper()}{j + 1:06d}"
            raw.append(
                {
                    "record_key": key, "source": source, "department": f"{source}科", "source_kind": "generic",
                    "file": f"extracts/{source}.csv", "row_number": j + 1, "file_sha256": "0" * 64,
                    "load_batch": RUN_ID, "record_id": record_id,
                    "name": person["name"], "id_number": person["id_number"], "sex": "男" if person["sex"] == "M" else "女",
                    "birth_date": person["birth_date"].strftime("%Y%m%d"), "ethnicity": None, "phone": None,
                    "hukou_address": None, "hukou_region": None, "residence_address": None, "residence_region": None,
                    "household_id": f"H{j // 3:05d}", "relation_to_head": None, "house_id": None, "employer": None,
                    "registered_at": "2020-05-01", "updated_at": "2026-11-20",
                }
            )  # fmt: skip
            std.append(
                {
                    "record_key": key, "source": source, "record_id": record_id,
                    "name": person["name"],
                    "id_number": person["id_number"], "id_type": "resident_id", "id_valid": True,
                    "birth_date": person["birth_date"], "sex": person["sex"],
                    "birth_date_conflicts_id": False, "sex_conflicts_id": False,
                }
            )  # fmt: skip
            emap.append(
                {
                    "record_key": key,
                    "source": source,
                    "record_id": record_id,
                    "person_id": person["person_id"],
                }
            )
        for r in range(rejected):
            quarantine.append(
                {
                    "source": source, "file": f"extracts/{source}.csv", "row_number": held + r + 1,
                    "record_id": None, "reason_code": "missing_record_id", "reason": "记录编号为空 / record_id is empty",
                }
            )  # fmt: skip
        counts.append(
            {
                "run_id": RUN_ID,
                "source": source,
                "rows_in": held + rejected,
                "accepted": held,
                "quarantined": rejected,
            }
        )
        counts.append(
            {
                "run_id": PREVIOUS_RUN_ID,
                "source": source,
                "rows_in": held + rejected,
                "accepted": held,
                "quarantined": rejected,
            }
        )
        files.append(
            {
                "run_id": RUN_ID,
                "source": source,
                "file": f"extracts/{source}.csv",
                "size_bytes": 1000,
                "sha256": "0" * 64,
                "rows": held + rejected,
            }
        )

    em = pl.DataFrame(emap)
    holders = em.select("source", "person_id").unique().group_by("person_id").len("sources_holding")
    rates = (
        em.join(holders, on="person_id")
        .group_by("source")
        .agg(
            pl.len().alias("records"),
            pl.col("person_id").n_unique().alias("persons"),
            pl.col("person_id").filter(pl.col("sources_holding") > 1).n_unique().alias("shared_persons"),
        )
        .with_columns((pl.col("shared_persons") / pl.col("persons")).alias("share_rate"))
    )
    raw_df = pl.DataFrame(raw, schema_overrides={c: pl.Utf8 for c in CANONICAL})
    # Two evidence records of the first person's finding, as the households stage writes them.
    first = em.filter(pl.col("person_id") == persons[0]["person_id"]).head(2)
    findings = first.select(
        pl.lit("multi_household").alias("kind"), "person_id", "source", "record_id",
        pl.lit("一人多户：同一人登记在2个户中：police_hukou 户号H0***0；police_hukou 户号H0***1").alias("detail"),
    )  # fmt: skip
    tables = {
        "raw_records": raw_df,
        "int_persons_standardized": pl.DataFrame(std),
        "entity_map": em,
        "quarantine": pl.DataFrame(quarantine, schema_overrides={"record_id": pl.Utf8}),
        "run_source_counts": pl.DataFrame(counts),
        "ingest_files": pl.DataFrame(files),
        "share_rates": rates,
        "household_findings": findings,
    }
    for name, frame in tables.items():
        con.register("__frame", frame.to_arrow())
        con.execute(f"create or replace table {name} as select * from __frame")
        con.unregister("__frame")
    # As the standardize stage leaves it: the raw cells are raw_records', shown by a view.
    create_view(con, RAW_VALUES_VIEW)
    return {"persons": persons}


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    connection = duckdb.connect()
    build_night(connection)
    yield connection
    connection.close()


def failed(summary: ValidationSummary) -> dict[tuple[str, str, str], str]:
    """(suite, batch, check) -> severity of every failed check."""
    return {(c.suite, c.batch, c.check): c.severity for c in summary.checks if not c.success}


def check(summary: ValidationSummary, suite: str, batch: str, name: str):
    (found,) = [c for c in summary.checks if (c.suite, c.batch, c.check) == (suite, batch, name)]
    return found


# GX costs about 2 s per validation run, so nights that plant problems which cannot
# disturb each other (different sources, different checks) share one run; each test
# still asserts its own problem, and the exact set of failures is asserted once.


@pytest.fixture(scope="module")
def clean_night(tmp_path_factory):
    connection = duckdb.connect()
    build_night(connection)
    # The rates stage may publish share_rate rounded to 4 places; that is not an error.
    connection.execute("update share_rates set share_rate = round(share_rate, 4)")
    run_dir = tmp_path_factory.mktemp("clean")
    return run_validation(connection, run_dir, RUN_ID), run_dir


def test_clean_night_passes(clean_night):
    summary, _ = clean_night
    assert summary.messages == []
    assert summary.success and summary.critical_failures == [] and summary.failure_message() == ""
    # 6 suites: run_source_counts 7 checks, raw_records 8 x 3 sources, int_persons_standardized
    # 4 x 3 sources, entity_map 7, household_findings 5, share_rates 6.
    assert summary.evaluated == 7 + 8 * 3 + 4 * 3 + 7 + 5 + 6
    assert {(s.suite, s.batch) for s in summary.suites} >= {("raw_records", "health"), ("entity_map", "run")}
    assert check(summary, "raw_records", "police_hukou", "row_count_in_band").element_count == 42


def test_clean_night_writes_docs_and_metrics(clean_night):
    summary, run_dir = clean_night
    site = run_dir / "validation"
    assert summary.docs_index == site / "index.html" and summary.docs_index.is_file()
    assert len(list(site.glob("validations/**/*.html"))) == 10  # one page per suite and batch
    index = summary.docs_index.read_text(encoding="utf-8")
    assert "raw_records.police_hukou" in index and "share_rates" in index
    metrics = summary.to_metrics()
    assert metrics["critical_failed"] == 0 and metrics["evaluated"] == summary.evaluated
    assert metrics["docs"] == "validation/index.html"
    json.dumps(metrics)  # goes into metrics.json as is
    used = json.loads((site / "suites" / "thresholds_used.json").read_text())
    assert used["police_hukou"]["id_number_well_formed"] == 0.95
    assert (site / "suites" / "entity_map.sql").is_file() and (site / "suites" / "README.md").is_file()
    results = json.loads((site / "results.json").read_text(encoding="utf-8"))
    assert len(results["checks"]) == summary.evaluated and results["critical_failed"] == 0
    assert {c["check"] for c in results["checks"]} >= {"record_in_one_cluster_only", "row_count_in_band"}


def test_clean_night_docs_load_nothing_from_the_internet(clean_night):
    _, run_dir = clean_night
    site = run_dir / "validation"
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 10
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert (
            re.findall(r'(?:src|href|url\()=?["\']?https?://(?!greatexpectations\.io)[^"\')]+', text) == []
        ), page
        for local in re.findall(r'(?:src|href)="([^"#]*static/[^"?]+)', text):
            assert (page.parent / local).resolve().is_file(), (page, local)
    assert (site / "static" / "vendor" / "jquery-3.7.1.min.js").is_file()
    assert not any("newsletter" in page.read_text(encoding="utf-8") for page in pages)


@pytest.fixture(scope="module")
def warnings_night(tmp_path_factory):
    connection = duckdb.connect()
    build_night(connection)

    def break_check_character(record_key: int) -> None:
        number = connection.execute(
            "select id_number from int_persons_standardized where record_key = ?", [record_key]
        ).fetchone()[0]
        wrong = "0" if number[-1] != "0" else "1"
        connection.execute(
            "update int_persons_standardized set id_number = ?, id_valid = false where record_key = ?",
            [number[:-1] + wrong, record_key],
        )

    # police_hukou: one id of 40 with a wrong check character (2.5 % > 2 % allowed).
    break_check_character(3)
    # residence (record_keys 41-65): the same, 1 of 25, but its threshold is lowered to 0.95.
    break_check_character(45)
    # residence: last night had twice as many rows.
    connection.execute(
        f"update run_source_counts set rows_in = rows_in * 2 where run_id = '{PREVIOUS_RUN_ID}' and source = 'residence'"
    )
    # health: its first night, so no row-count band.
    connection.execute(
        f"delete from run_source_counts where run_id = '{PREVIOUS_RUN_ID}' and source = 'health'"
    )
    # health: birth date and sex that contradict the id in every second record.
    connection.execute(
        "update int_persons_standardized set birth_date = birth_date + 1, sex = case sex when 'M' then 'F' else 'M' end "
        "where source = 'health' and record_key % 2 = 0"
    )
    # health: a third of the raw ids cut to 16 digits, their birth dates unparseable.
    connection.execute(
        "update raw_records set id_number = left(id_number, 16), birth_date = '1990年13月' "
        "where source = 'health' and record_key % 3 = 0"
    )
    # police_hukou maps a phone column that never holds a value.
    mapped = {
        "police_hukou": ["record_id", "name", "id_number", "phone"],
        "health": ["name", "id_number", "sex"],
    }
    overrides = {"sources": {"residence": {"id_check_character_valid": 0.95}}}
    return run_validation(
        connection, tmp_path_factory.mktemp("warnings"), RUN_ID, overrides, mapped_fields=mapped
    )


def test_warnings_night_fails_exactly_the_planted_checks_and_nothing_critical(warnings_night):
    assert failed(warnings_night) == {
        ("int_persons_standardized", "police_hukou", "id_check_character_valid"): "warning",
        ("raw_records", "residence", "row_count_in_band"): "warning",
        ("int_persons_standardized", "health", "birth_date_agrees_with_id"): "warning",
        ("int_persons_standardized", "health", "sex_agrees_with_id"): "warning",
        ("raw_records", "health", "id_number_well_formed"): "warning",
        ("raw_records", "health", "birth_date_parses"): "warning",
        ("raw_records", "police_hukou", "mapped_columns_present"): "warning",
    }
    assert warnings_night.critical_failures == [] and warnings_night.failure_message() == ""
    assert not warnings_night.success and warnings_night.to_metrics()["warnings_failed"] == 7


def test_bad_check_character_is_a_warning(warnings_night):
    found = check(warnings_night, "int_persons_standardized", "police_hukou", "id_check_character_valid")
    assert (found.unexpected_count, found.element_count) == (1, 40)
    assert found.examples == ["wrong_check_character"]
    assert found.message.startswith(
        "WARNING int_persons_standardized[police_hukou] id_check_character_valid: 1 of 40"
    )


def test_per_source_threshold_override_lets_the_same_problem_pass(warnings_night):
    found = check(warnings_night, "int_persons_standardized", "residence", "id_check_character_valid")
    assert found.success and found.unexpected_count == 1
    assert warnings_night.thresholds["residence"]["id_check_character_valid"] == 0.95
    assert warnings_night.thresholds["health"]["id_check_character_valid"] == 0.98


def test_halved_row_count_is_a_warning(warnings_night):
    found = check(warnings_night, "raw_records", "residence", "row_count_in_band")
    assert not found.success and found.examples == [0.5]


def test_first_night_has_no_row_count_band(warnings_night):
    found = check(warnings_night, "raw_records", "health", "row_count_in_band")
    assert found.success and found.unexpected_count == 0


def test_birth_date_and_sex_that_contradict_the_id_are_warnings(warnings_night):
    found = check(warnings_night, "int_persons_standardized", "health", "birth_date_agrees_with_id")
    assert found.unexpected_count == 9 and found.examples == ["differs"]  # keys 66-83, the even ones


def test_malformed_ids_and_unparseable_dates_show_only_shapes(warnings_night):
    assert check(warnings_night, "raw_records", "health", "id_number_well_formed").examples == ["9" * 16]
    assert check(warnings_night, "raw_records", "health", "birth_date_parses").examples == ["9999字99字"]


def test_mapped_column_that_never_holds_a_value_is_a_warning(warnings_night):
    found = check(warnings_night, "raw_records", "police_hukou", "mapped_columns_present")
    assert found.message.endswith("missing phone")
    assert check(warnings_night, "raw_records", "health", "mapped_columns_present").success


def test_a_relative_run_folder_gets_its_data_docs(con, tmp_path, monkeypatch):
    # `renhu demo` (the README's first command) publishes into ./renhu-demo: GX must be
    # handed an absolute folder, or validation cannot run and the night does not publish.
    monkeypatch.chdir(tmp_path)
    summary = run_validation(con, Path("renhu-demo") / "runs" / "r1", RUN_ID)
    assert summary.critical_failures == [] and not any("could not run" in m for m in summary.messages)
    assert (tmp_path / "renhu-demo" / "runs" / "r1" / "validation" / "index.html").is_file()


def test_duplicated_record_id_among_accepted_rows_is_critical(con, tmp_path):
    con.execute(
        "update raw_records set record_id = 'RE000001' where source = 'residence' and record_id = 'RE000002'"
    )
    summary = run_validation(con, tmp_path, RUN_ID)

    # The duplicate ripples into entity_map (same_source_record), and 2 of 26 rows of the
    # extract repeating a record id is above the 1 % warning threshold.
    assert failed(summary) == {
        ("raw_records", "residence", "record_id_unique_among_accepted"): "critical",
        ("raw_records", "residence", "record_id_unique_in_extract"): "warning",
        ("entity_map", "run", "cluster_row_names_its_record"): "critical",
    }
    assert any(
        "record_id_unique_among_accepted" in line and "RE000001" in line for line in summary.critical_failures
    )


def test_record_in_two_clusters_is_critical(con, tmp_path):
    con.execute(
        "insert into entity_map select record_key, source, record_id, 'P0000000000ff' from entity_map where record_key = 5"
    )
    summary = run_validation(con, tmp_path, RUN_ID)

    assert failed(summary)[("entity_map", "run", "record_in_one_cluster_only")] == "critical"
    assert check(summary, "entity_map", "run", "record_in_one_cluster_only").examples == [5]
    assert summary.failure_message().startswith("validation failed: CRITICAL")
    # The checked frames were temporary tables of the flow's connection: none is left.
    assert con.execute("select count(*) from duckdb_tables() where temporary").fetchone()[0] == 0


def test_lost_rows_are_critical(con, tmp_path):
    con.execute("delete from entity_map where record_key = 7")
    con.execute("delete from quarantine where source = 'residence'")
    summary = run_validation(con, tmp_path, RUN_ID)

    assert failed(summary) == {
        ("entity_map", "run", "every_accepted_record_clustered"): "critical",
        ("run_source_counts", "run", "entity_map_equals_accepted"): "critical",
        ("run_source_counts", "run", "quarantined_equals_quarantine"): "critical",
        # share_rates still counts the lost record and its person (held by all three sources)
        ("share_rates", "run", "records_match_entity_map"): "critical",
        ("share_rates", "run", "persons_match_entity_map"): "critical",
        ("share_rates", "run", "shared_persons_match_entity_map"): "critical",
    }


def test_person_with_two_valid_ids_is_critical(con, tmp_path):
    # Persons 1 and 2 merged into one cluster: two different valid id numbers.
    con.execute("update entity_map set person_id = 'P000000000001' where person_id = 'P000000000002'")
    summary = run_validation(con, tmp_path, RUN_ID)

    assert failed(summary)[("entity_map", "run", "one_valid_id_number_per_person")] == "critical"
    found = check(summary, "entity_map", "run", "one_valid_id_number_per_person")
    assert found.unexpected_count == 6  # both persons' records in all three sources
    assert found.examples == [2]


def test_parent_id_on_a_childs_record_is_not_a_second_id(con, tmp_path):
    # A child enrolled under a parent's number: the record is rightly the child's, and the id
    # on it contradicts its birth date, so it is someone else's number, not the child's second.
    con.execute("update entity_map set person_id = 'P000000000001' where person_id = 'P000000000002'")
    con.execute(
        "update int_persons_standardized set birth_date_conflicts_id = true "
        "where record_key in (select record_key from entity_map where person_id = 'P000000000001') "
        "and id_number <> (select min(id_number) from int_persons_standardized s join entity_map e using (record_key) "
        "where e.person_id = 'P000000000001')"
    )
    summary = run_validation(con, tmp_path, RUN_ID)
    assert ("entity_map", "run", "one_valid_id_number_per_person") not in failed(summary)


def test_wrong_share_rate_is_critical(con, tmp_path):
    con.execute("update share_rates set share_rate = share_rate - 0.1 where source = 'police_hukou'")
    # health: shared_persons and its rate agree with each other but not with entity_map.
    con.execute(
        "update share_rates set shared_persons = shared_persons - 1, share_rate = (shared_persons - 1) / persons "
        "where source = 'health'"
    )
    summary = run_validation(con, tmp_path, RUN_ID)

    assert failed(summary) == {
        ("share_rates", "run", "share_rate_is_shared_over_persons"): "critical",
        ("share_rates", "run", "shared_persons_match_entity_map"): "critical",
    }
    assert check(summary, "share_rates", "run", "share_rate_is_shared_over_persons").unexpected_count == 1


def test_findings_that_name_no_accepted_record_or_leak_an_id_are_critical(con, tmp_path):
    """Each planted fault fails its own check, once."""
    persons = con.execute("select person_id, source, record_id from entity_map order by record_key limit 3").fetchall()
    (p1, s1, r1), (p2, s2, r2), (_, s3, r3) = persons
    con.execute(
        """
        insert into household_findings values
            ('lives_on_the_moon', $p1, $s1, $r1, '说明'),
            ('no_head', $p1, $s1, 'NOT-A-RECORD', '户无户主'),
            ('no_head', $p1, $s2, $r2, '户无户主'),
            ('no_head', $p2, $s2, $r2, null),
            ('two_heads', $p2, $s2, $r2, '一户多个户主：户主 王伟（330602199001011234）')
        """,
        {"p1": p1, "s1": s1, "r1": r1, "p2": p2, "s2": s2, "r2": r2},
    )
    summary = run_validation(con, tmp_path, RUN_ID)

    assert failed(summary) == {
        ("household_findings", "run", "kind_known"): "critical",
        ("household_findings", "run", "evidence_record_accepted"): "critical",
        ("household_findings", "run", "person_is_the_records"): "critical",
        ("household_findings", "run", "detail_present"): "critical",
        ("household_findings", "run", "detail_without_id_number"): "critical",
    }
    counts = {c.check: c.unexpected_count for c in summary.checks if c.suite == "household_findings"}
    # the record that is not accepted has no person either: two rows fail person_is_the_records
    assert counts == {"kind_known": 1, "evidence_record_accepted": 1, "person_is_the_records": 2,
                      "detail_present": 1, "detail_without_id_number": 1}
    assert "330602199001011234" not in (tmp_path / "validation").joinpath("index.html").read_text(encoding="utf-8")
    for page in (tmp_path / "validation").rglob("*.html"):
        assert "330602199001011234" not in page.read_text(encoding="utf-8")


def test_the_findings_suite_knows_every_kind_the_households_stage_finds() -> None:
    from linkage.households import FINDING_KINDS

    (suite,) = [s for s in load_suites() if s.suite == "household_findings"]
    (known,) = [e for e in suite.expectations if e.check == "kind_known"]
    assert known.kwargs["value_set"] == list(FINDING_KINDS)


def test_a_rate_published_for_a_source_without_persons_is_critical(con, tmp_path):
    # A source whose every row was quarantined: no records, no persons, so no rate.
    con.execute("insert into share_rates values ('schools', 0, 0, 0, 0.5)")
    summary = run_validation(con, tmp_path, RUN_ID)

    assert failed(summary) == {("share_rates", "run", "share_rate_is_shared_over_persons"): "critical"}
    assert check(summary, "share_rates", "run", "share_rate_is_shared_over_persons").unexpected_count == 1


def test_row_counts_are_compared_with_the_last_published_night(con, tmp_path):
    # Between the published night and tonight a night failed on truncated extracts (a tenth
    # of their rows): tonight is judged against the published night, not that one.
    failed_run = "20261122T220000Z-dead00"
    con.execute(
        f"""
        insert into run_source_counts
        select '{failed_run}', source, rows_in // 10, accepted // 10, quarantined // 10
        from run_source_counts where run_id = '{PREVIOUS_RUN_ID}'
        """
    )
    con.execute(
        "create table run_ledger (run_id varchar, started_at timestamptz, finished_at timestamptz, status varchar, "
        "sources_file varchar, sources_sha256 varchar, stages json, message varchar)"
    )
    con.execute(
        f"""
        insert into run_ledger (run_id, status) values
            ('{PREVIOUS_RUN_ID}', 'published'), ('{failed_run}', 'failed'), ('{RUN_ID}', 'running')
        """
    )
    summary = run_validation(con, tmp_path / "judged", RUN_ID)
    assert not any(c.check == "row_count_in_band" for c in summary.checks if not c.success)

    # Had that night published, tonight's tenfold rows would be out of band.
    con.execute(f"update run_ledger set status = 'published' where run_id = '{failed_run}'")
    summary = run_validation(con, tmp_path / "published", RUN_ID)
    assert {c.batch for c in summary.checks if c.check == "row_count_in_band" and not c.success} == {
        "police_hukou", "health", "residence"
    }


def test_accounting_off_is_critical(con, tmp_path):
    con.execute(
        f"update run_source_counts set rows_in = rows_in + 1 where run_id = '{RUN_ID}' and source = 'health'"
    )
    summary = run_validation(con, tmp_path, RUN_ID)

    assert failed(summary) == {
        ("run_source_counts", "run", "rows_in_equals_accepted_plus_quarantined"): "critical",
        ("run_source_counts", "run", "files_rows_equal_rows_in"): "warning",
    }
    assert summary.failure_message().startswith(
        "validation failed: CRITICAL run_source_counts rows_in_equals_accepted_plus_quarantined: 1 of 3"
    )


def test_empty_night_passes(con, tmp_path):
    for table in ("raw_records", "int_persons_standardized", "entity_map", "quarantine", "run_source_counts"):
        con.execute(f"delete from {table}")
    con.execute("delete from share_rates")
    con.execute("delete from household_findings")
    summary = run_validation(con, tmp_path, RUN_ID)

    assert summary.messages == [] and summary.evaluated == 7 + 7 + 5 + 6  # run-wide suites only


def test_missing_table_is_reported_not_raised(con, tmp_path):
    con.execute("drop table share_rates")
    summary = run_validation(con, tmp_path, RUN_ID)

    assert summary.critical_failures == [
        "CRITICAL share_rates: cannot validate, table(s) share_rates missing"
    ]
    assert not summary.success
    # A suite that could not be validated is no failed check: the counts of checks add up
    # (failed = critical + warnings, each listed in results.json) and it is counted apart.
    # Before, critical_failed counted it and failed did not: "failed 0, critical failed 1".
    metrics = summary.to_metrics()
    assert metrics["failed"] == metrics["critical_failed"] + metrics["warnings_failed"] == 0
    assert metrics["could_not_run"] == 1 and metrics["errors"] == summary.critical_failures
    results = json.loads((tmp_path / "validation" / "results.json").read_text(encoding="utf-8"))
    assert (results["critical_failed"], results["could_not_run"]) == (0, 1)
    text = headline_markdown({"run_id": RUN_ID, "validation": metrics}, tmp_path / "validation")
    assert f"{metrics['evaluated']} checks, 0 failed (0 critical); 1 could not be validated (critical)." in text
    assert (tmp_path / "validation" / "index.html").is_file()  # the other suites still documented
    # The Data Docs say so too: before, share_rates was absent from the site and every suite
    # listed was green, on the very site the failure message sends the auditor to.
    index = (tmp_path / "validation" / "index.html").read_text(encoding="utf-8")
    assert "duckdb-share_rates" in index and "cannot validate, table(s) share_rates missing" in index
    (page,) = (tmp_path / "validation" / "validations").rglob("duckdb-share_rates.html")
    text = " ".join(re.sub(r"<[^>]+>", " ", page.read_text(encoding="utf-8")).split())
    assert "Status: Failed" in text and "Evaluated Expectations 0" in text
    assert "CRITICAL share_rates: cannot validate, table(s) share_rates missing (no check ran" in text


def test_distinct_record_ids_that_mask_alike_stay_distinct(con, tmp_path):
    # Two record ids that differ only in the masked middle digits.
    con.execute("update raw_records set record_id = '330681199001017039' where record_key = 41")
    con.execute("update raw_records set record_id = '330681198512127039' where record_key = 42")
    summary = run_validation(con, tmp_path, RUN_ID)

    assert check(summary, "raw_records", "residence", "record_id_unique_among_accepted").success
    # (entity_map still names the old record ids, which the entity_map suite reports)
    assert set(failed(summary)) == {("entity_map", "run", "cluster_row_names_its_record")}


def test_data_docs_hold_no_input_id_number_or_name(tmp_path):
    con = duckdb.connect()
    night = build_night(con)
    # An earlier validation into the same folder must not survive into the new site.
    run_validation(con, tmp_path, "20261122T020000Z-earlier")

    ids = [p["id_number"] for p in night["persons"]]
    names = [p["name"] for p in night["persons"]]
    # Plant every problem that makes GX list unexpected values, with personal data nearby:
    # record ids built from id numbers (duplicated), malformed and wrong ids, empty names.
    con.execute("update raw_records set record_id = 'HJ' || id_number where source = 'police_hukou'")
    con.execute(
        "update raw_records set record_id = (select record_id from raw_records where record_key = 1) where record_key = 2"
    )
    con.execute(
        "update raw_records set id_number = id_number || '1' where source = 'residence' and record_key % 2 = 0"
    )
    con.execute(
        "update int_persons_standardized set id_number = left(id_number, 17) || 'Y', name = null where source = 'health'"
    )
    con.execute("update entity_map set person_id = 'P000000000001' where person_id = 'P000000000002'")
    con.execute(f"update quarantine set record_id = '{ids[5]}' where source = 'police_hukou'")
    summary = run_validation(con, tmp_path, RUN_ID)
    assert summary.critical_failures and summary.failed >= 5

    files = [p for p in (tmp_path / "validation").rglob("*") if p.is_file()]
    assert len(files) > 10
    assert not any("earlier" in str(p) for p in files)
    leaks = []
    needles = {
        s: [s, json.dumps(s)[1:-1], s.encode("ascii", "xmlcharrefreplace").decode()] for s in ids + names
    }
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="ignore")
        for value, forms in needles.items():
            if any(form in text for form in forms):
                leaks.append(f"{path.relative_to(tmp_path)}: {value}")
    assert leaks == []
    # The docs do list the unexpected record ids, masked: the check above was not vacuous.
    masked = ids[0][:6] + "********" + ids[0][-4:]
    assert any(masked in p.read_text(encoding="utf-8", errors="ignore") for p in files if p.suffix == ".html")
    assert any(masked in line for line in summary.messages)
    assert not any(i in line for line in summary.messages for i in ids)


def test_suite_files_are_complete():
    suites = {s.suite: s for s in load_suites()}
    assert set(suites) == {
        "raw_records",
        "int_persons_standardized",
        "entity_map",
        "share_rates",
        "run_source_counts",
        "household_findings",
    }
    thresholds = load_thresholds()
    for suite in suites.values():
        for check in suite.expectations:
            assert check.why, check.check
            if check.mostly:
                assert check.mostly in thresholds.defaults
    critical = {c.check for s in suites.values() for c in s.expectations if c.severity == "critical"}
    assert {"record_in_one_cluster_only", "one_valid_id_number_per_person", "share_rate_is_shared_over_persons",
            "rows_in_equals_accepted_plus_quarantined"} <= critical  # fmt: skip


def test_unknown_threshold_override_is_refused():
    with pytest.raises(ValueError, match="no default"):
        load_thresholds(overrides={"sources": {"health": {"id_mostly": 0.5}}})


def test_bad_threshold_override_fails_the_run_without_raising(tmp_path):
    summary = run_validation(duckdb.connect(), tmp_path, RUN_ID, {"sources": {"health": {"id_mostly": 0.5}}})
    assert not summary.success and summary.evaluated == 0
    assert summary.critical_failures[0].startswith("CRITICAL validation configuration")
    assert "'id_mostly' (health) has no default" in summary.failure_message()


def test_artifact_builders():
    rates = pl.DataFrame(
        {"source": ["residence", "health"], "records": [25, 18], "persons": [25, 18],
         "shared_persons": [25, 18], "share_rate": [1.0, 0.444444444]}
    )  # fmt: skip
    rows = share_rates_table(rates)
    assert [r["source"] for r in rows] == ["health", "residence"]
    assert rows[0]["share_rate"] == 0.4444

    headline = {
        "run_id": RUN_ID,
        "sources": {"health": {"records_in": 18}},
        "stages": [{"stage": "ingest", "seconds": 1.0}],
        "validation": {"success": False, "evaluated": 55, "failed": 2, "critical_failed": 1},
        "records_in": 86,
        "share_rate": {"numerator": 30, "denominator": 40, "value": 0.75},
        "household_consistency_rate": {"numerator": 0, "denominator": 0, "value": None},
    }
    text = headline_markdown(headline, Path("/srv/renhu/runs/x/validation"))
    assert text.startswith(f"# renhu run {RUN_ID}")
    assert "| records_in | 86 |" in text
    assert "| share_rate | 75.00 % (30 / 40) |" in text
    assert "| household_consistency_rate | n/a (0 / 0) |" in text
    assert "health" not in text and "ingest" not in text  # per-source detail stays in metrics.json
    assert "Validation found problems: 55 checks, 2 failed (1 critical)." in text
    assert "(file:///srv/renhu/runs/x/validation/index.html)" in text


@pytest.mark.slow
@pytest.mark.prefect
def test_publish_prefect_artifacts_inside_a_flow_run(prefect_harness, tmp_path):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from flows.validation import publish_prefect_artifacts

    rates = pl.DataFrame(
        {"source": ["health"], "records": [18], "persons": [18], "shared_persons": [9], "share_rate": [0.5]}
    )

    @flow(name="artifact-check")
    def night() -> None:
        publish_prefect_artifacts(rates, {"run_id": RUN_ID, "records_in": 20}, tmp_path / "validation")

    # Other flows of the session publish under the same keys: read this run's only.
    flow_run_id = night(return_state=True).state_details.flow_run_id
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["renhu-share-rates", "renhu-run-summary"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    assert len(found) == 2
    by_key = {a.key: a for a in found}
    assert by_key["renhu-run-summary"].type == "markdown"
    assert "| records_in | 20 |" in by_key["renhu-run-summary"].data
    assert by_key["renhu-share-rates"].type == "table"
    assert "health" in str(by_key["renhu-share-rates"].data)


def test_benchmark_night_is_consistent_and_passes(tmp_path):
    # benchmarks/bench_validation.py builds its night in SQL; at a small size it must pass
    # every check, or the 1M-record figure would time a night full of failures.
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_validation.py"
    spec = importlib.util.spec_from_file_location("bench_validation", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    con = duckdb.connect()
    sizes = bench.build_night(con, 3000, 4)
    summary = run_validation(con, tmp_path, bench.RUN_ID)

    assert sizes["accepted"] > 2500 and sizes["quarantined"] > 0
    assert summary.messages == [] and summary.evaluated == 7 + 8 * 4 + 4 * 4 + 7 + 5 + 6


def test_check_on_a_missing_column_fails_with_the_reason(con, tmp_path):
    import shutil

    from flows.validation import EXPECTATIONS_DIR

    suites = tmp_path / "suites"
    shutil.copytree(EXPECTATIONS_DIR, suites)
    share = suites / "share_rates.yaml"
    share.write_text(share.read_text(encoding="utf-8").replace("column: share_rate,", "column: share_ratio,"))
    summary = run_validation(con, tmp_path / "run", RUN_ID, suites_dir=suites)

    found = check(summary, "share_rates", "run", "share_rate_within_0_1")
    assert not found.success and summary.critical_failures == [found.message]
    assert found.message.endswith(
        'could not be evaluated: The column "share_ratio" is not in the checked frame (share_rates.sql).'
    )


def test_preload_imports_great_expectations_in_the_background():
    import sys

    from flows.validation import preload_great_expectations

    thread = preload_great_expectations()
    thread.join(timeout=120)
    assert not thread.is_alive() and "great_expectations" in sys.modules


def test_date_forms_in_the_raw_records_frame(con):
    # ISO dates and timestamps take a per-row shortcut; every other form is judged once
    # per distinct value. Both must agree with the forms linkage/dates.py reads.
    forms = {
        "2020-01-02": "parses",
        "2020-01-02 08:00:00": "parses",
        "2020-02-30": "9999-99-99",  # ISO shape, impossible day
        "2020-01-02 25:00:00": "parses",  # the time is not judged, only the date
        "2020/1/2": "parses",
        "2020年1月2日": "parses",
        "２０２０－０１－０２": "parses",
        "19900230": "99999999",
        "43831": "parses",  # an Excel day serial
        "不详": None,
        "1990年13月": "9999字99字",
    }
    for key, value in enumerate(forms, start=1):
        con.execute("update raw_records set birth_date = ? where record_key = ?", [value, key])
    sql = next(s for s in load_suites() if s.suite == "raw_records").frame_sql
    create_compared_nights_view(con)
    found = dict(
        con.execute(
            f"select r.birth_date, f.birth_date_check from ({sql}) as f "
            "join raw_records as r on r.source = f.source and r.record_id = f.record_id "
            "where r.record_key <= $forms",
            {"run_id": RUN_ID, "mask_salt": "x", "forms": len(forms)},
        ).fetchall()
    )
    assert found == forms
