"""Rates on a hand-made city whose every figure is counted in the comments.

Persons: A, B (household register), C (school only), D (migrant, registered), E (migrant,
rents, not registered), F (rents, hukou unknown). The register names townships of 3306..,
so the city is prefecture 3306.
"""

from __future__ import annotations

import json

import duckdb
import polars as pl
import pytest

from linkage.fields import RAW_VALUES_VIEW
from linkage.households import find_household_findings, find_household_findings_db, person_records_table
from linkage.rates import Rates, compute_rates, compute_rates_db, rate
from tests.linkage.city_builders import city_frames, record

HOME = "330602001"
ELSEWHERE = "330602003"
KINDS = {"police_hukou": "hukou", "residence_reg": "residence", "rental": "rental", "school": "generic"}


DEPARTMENTS = {source: (f"dept_{source}", kind) for source, kind in KINDS.items()}


def rec(source: str, record_id: str, person_id: str | None, **fields: object) -> dict[str, object]:
    return record(DEPARTMENTS, source, record_id, person_id, **fields)


def city(rows: list[dict[str, object]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    schema = {
        "source": pl.String,
        "department": pl.String,
        "source_kind": pl.String,
        "record_id": pl.String,
        "person_id": pl.String,
        "name": pl.String,
        "name_raw": pl.String,
        "id_number": pl.String,
        "household_id": pl.String,
        "relation_to_head": pl.String,
        "hukou_region": pl.String,
        "hukou_township": pl.String,
        "residence_township": pl.String,
    }
    return city_frames(rows, schema)


ROWS = [
    # police_hukou: 3 records, persons A and B, A registered twice -> 1 duplicate record.
    rec(
        "police_hukou",
        "h1",
        "A",
        name="王一",
        name_raw="王一",
        household_id="1",
        relation_to_head="head",
        hukou_township=HOME,
    ),
    rec(
        "police_hukou",
        "h2",
        "B",
        name="王二",
        name_raw="王二",
        household_id="1",
        relation_to_head="spouse",
        hukou_township=HOME,
    ),
    # A's second entry: the name cell held a placeholder (不详), so the standardized name is empty.
    rec(
        "police_hukou",
        "h3",
        "A",
        name=None,
        name_raw="不详",
        household_id="1",
        relation_to_head="head",
        hukou_township=HOME,
    ),
    # residence_reg: A lives at home; D (hukou Zhengzhou 410102) is registered in ELSEWHERE.
    rec("residence_reg", "r1", "A", name="王一", residence_township=HOME),
    rec("residence_reg", "r2", "D", name="赵四", hukou_region="410102", residence_township=ELSEWHERE),
    # rental: D, E (hukou Wuhan 420102, no registration), F (hukou unknown), B renting ELSEWHERE.
    rec("rental", "t1", "D", name="赵四", residence_township=ELSEWHERE),
    rec("rental", "t2", "E", name="钱五", hukou_region="420102", residence_township=ELSEWHERE),
    rec("rental", "t3", "F", name="孙六", residence_township=ELSEWHERE),
    rec("rental", "t4", "B", name="王二", residence_township=ELSEWHERE),
    # school: C, hukou 330602 (in the city, though not in the register): not floating.
    rec("school", "s1", "C", name="王三", hukou_region="330602"),
]


def checked_rates(
    std: pl.DataFrame, entity_map: pl.DataFrame, mapped_fields: dict[str, list[str]] | None = None,
    sources: pl.DataFrame | None = None,
) -> Rates:
    """The rates of the frame interface, checked figure for figure against the DuckDB one."""
    rates = compute_rates(
        std, entity_map, find_household_findings(std, entity_map), mapped_fields=mapped_fields, sources=sources
    )
    with duckdb.connect() as con:
        con.register("std_frame", std)
        con.register("entity_map_frame", entity_map)
        con.execute("create table int_persons_standardized as select * from std_frame")
        con.execute("create table entity_map as select * from entity_map_frame")
        # As the flow's stage calls them: one working table for the findings and the rates.
        with person_records_table(con) as records:
            findings = find_household_findings_db(con, records=records)
            from_db = compute_rates_db(con, findings, mapped_fields=mapped_fields, records=records, sources=sources)
    assert from_db.share_rates.equals(rates.share_rates), (from_db.share_rates, rates.share_rates)
    assert from_db.overlap.equals(rates.overlap)
    # Same figures in the same order: metrics.json is written from this dict as it stands.
    assert json.dumps(from_db.metrics, ensure_ascii=False) == json.dumps(rates.metrics, ensure_ascii=False)
    return rates


@pytest.fixture(scope="module")
def rates():
    return checked_rates(*city(ROWS))


def test_share_rates_per_source(rates) -> None:
    got = {r["source"]: r for r in rates.share_rates.iter_rows(named=True)}
    assert rates.share_rates.columns == ["source", "records", "persons", "shared_persons", "share_rate"]
    assert list(got) == ["police_hukou", "residence_reg", "rental", "school"]  # sources-file order
    # police: A (also residence), B (also rental) -> 2/2
    assert (
        got["police_hukou"]["records"],
        got["police_hukou"]["persons"],
        got["police_hukou"]["shared_persons"],
    ) == (3, 2, 2)
    assert got["police_hukou"]["share_rate"] == 1.0
    # rental: D (also residence), B (also police) shared; E, F only here -> 2/4
    assert (got["rental"]["persons"], got["rental"]["shared_persons"], got["rental"]["share_rate"]) == (
        4,
        2,
        0.5,
    )
    assert got["school"]["share_rate"] == 0.0


def test_overall_share_duplicates_and_overlap(rates) -> None:
    m = rates.metrics
    assert m["persons"] == 6
    # A, B, D are held by two sources or more
    assert m["share_rate"] == {"numerator": 3, "denominator": 6, "value": 0.5}
    assert m["duplicate_records"] == 1
    assert m["duplicate_rate"] == {"numerator": 1, "denominator": 10, "value": 0.1}
    assert m["sources"]["police_hukou"]["duplicate_records"] == 1
    assert m["sources"]["police_hukou"]["duplicate_rate"] == pytest.approx(1 / 3, abs=1e-6)
    assert m["overlap"]["police_hukou"] == {"residence_reg": 1, "rental": 1, "school": 0}
    assert m["overlap"]["rental"]["residence_reg"] == 1
    overlap = {(a, b): n for a, b, n in rates.overlap.iter_rows()}
    assert overlap[("residence_reg", "rental")] == overlap[("rental", "residence_reg")] == 1
    assert ("school", "school") not in overlap


def test_household_consistency_and_floating_registration(rates) -> None:
    # A at home (agree), B rents ELSEWHERE (disagree); persons without both sides are left out.
    assert rates.metrics["household_consistency_rate"] == {"numerator": 1, "denominator": 2, "value": 0.5}
    # floating: D (registered) and E (not); C is from the city, F's hukou is unknown.
    assert rates.metrics["floating_registration_rate"] == {"numerator": 1, "denominator": 2, "value": 0.5}


def test_field_completeness_counts_placeholders_as_empty(rates) -> None:
    police = rates.metrics["sources"]["police_hukou"]["field_completeness"]
    assert police["name"] == pytest.approx(2 / 3, abs=1e-6)
    assert police["household_id"] == 1.0
    assert "residence_region" not in police  # not mapped by the register
    school = rates.metrics["sources"]["school"]["field_completeness"]
    assert set(school) == {"name", "hukou_region"}


def test_mapped_fields_given_by_the_sources_file() -> None:
    rates = checked_rates(*city(ROWS), mapped_fields={"school": ["record_id", "name", "id_number"]})
    assert rates.metrics["sources"]["school"]["field_completeness"] == {"name": 1.0, "id_number": 0.0}


def test_findings_counted_by_kind_and_department(rates) -> None:
    findings = rates.metrics["findings"]
    # B: register HOME, freshest evidence ELSEWHERE (undated, reported) -> 2 evidence records
    assert findings["by_kind"]["hukou_residence_split"] == 2
    assert findings["persons_by_kind"]["hukou_residence_split"] == 1
    assert findings["by_department"]["dept_police_hukou"]["hukou_residence_split"] == 1
    assert findings["by_department"]["dept_school"]["two_heads"] == 0
    # B, E and F rent ELSEWHERE with no registration there; D is registered.
    assert findings["persons_by_kind"]["unregistered_resident"] == 3


def test_metrics_are_json_ready_and_empty_input_gives_null_rates() -> None:
    empty = checked_rates(*city([]))
    json.dumps(empty.metrics)
    assert empty.metrics["share_rate"] == {"numerator": 0, "denominator": 0, "value": None}
    assert empty.metrics["household_consistency_rate"]["value"] is None
    assert empty.share_rates.height == 0


def test_a_source_with_no_accepted_record_keeps_its_row() -> None:
    # A department whose extract was empty tonight, or whose every row went to quarantine,
    # vanished from share_rates.csv, from metrics.json's overlap and findings by department,
    # and its metrics entry had no persons or share rate: counted from the records, the
    # sources were only those with a record. Given the sources file's list, it stays, at 0.
    std, entity_map = city(ROWS)
    sources = pl.DataFrame({
        "source": ["police_hukou", "veterans", "residence_reg", "rental", "school"],
        "department": ["dept_police_hukou", "退役军人事务局", "dept_residence_reg", "dept_rental", "dept_school"],
        "kind": ["hukou", "generic", "residence", "rental", "generic"],
    })
    rates = checked_rates(std, entity_map, sources=sources)
    assert rates.share_rates["source"].to_list() == sources["source"].to_list()
    assert rates.share_rates.filter(pl.col("source") == "veterans").row(0) == ("veterans", 0, 0, 0, None)
    veterans = rates.metrics["sources"]["veterans"]
    assert (veterans["department"], veterans["persons"], veterans["share_rate"]) == ("退役军人事务局", 0, None)
    assert rates.metrics["overlap"]["veterans"]["police_hukou"] == rates.metrics["overlap"]["rental"]["veterans"] == 0
    assert rates.metrics["findings"]["by_department"]["退役军人事务局"]["two_heads"] == 0
    # The figures of the sources with records are those without the list.
    assert rates.share_rates.filter(pl.col("source") != "veterans").equals(checked_rates(std, entity_map).share_rates)


def test_rate_helper() -> None:
    assert rate(1, 3) == {"numerator": 1, "denominator": 3, "value": 0.333333}
    assert rate(0, 0)["value"] is None


def test_id_region_stands_in_for_an_unstated_hukou() -> None:
    std, entity_map = city(ROWS)
    # G rents with an id issued in Wuhan and no stated hukou: floating, unregistered.
    # H rents with a local id: a local the register misses, not floating.
    extra = pl.DataFrame(
        {
            "source": ["rental", "rental"],
            "department": ["dept_rental"] * 2,
            "source_kind": ["rental"] * 2,
            "record_key": [100, 101],
            "record_id": ["t7", "t8"],
            "id_region": ["420102", "330602"],
            "residence_township": [ELSEWHERE] * 2,
        }
    )
    std = pl.concat([std, extra], how="diagonal_relaxed")
    entity_map = pl.concat(
        [
            entity_map,
            pl.DataFrame(
                {
                    "record_key": [100, 101],
                    "source": ["rental"] * 2,
                    "record_id": ["t7", "t8"],
                    "person_id": ["G", "H"],
                }
            ),
        ],
        how="diagonal_relaxed",
    )
    rates = checked_rates(std, entity_map)
    # D (registered), E and G (not)
    assert rates.metrics["floating_registration_rate"] == {
        "numerator": 1,
        "denominator": 3,
        "value": 0.333333,
    }


def test_household_consistency_counts_a_person_living_at_any_of_their_register_townships() -> None:
    # B is registered in two households (HOME and ELSEWHERE: 一人多户) and lives in ELSEWHERE:
    # not 人户分离, so 人户一致 too (the rate follows the split's rule).
    rows = [
        rec("police_hukou", "h1", "A", household_id="1", relation_to_head="head", hukou_township=HOME),
        rec("police_hukou", "h2", "B", household_id="1", relation_to_head="spouse", hukou_township=HOME),
        rec("police_hukou", "h9", "B", household_id="9", relation_to_head="head", hukou_township=ELSEWHERE),
        rec("residence_reg", "r1", "A", residence_township=HOME),
        rec("residence_reg", "r2", "B", residence_township=ELSEWHERE),
    ]
    std, entity_map = city(rows)
    assert find_household_findings(std, entity_map).filter(pl.col("kind") == "hukou_residence_split").is_empty()
    rates = checked_rates(std, entity_map)
    assert rates.metrics["household_consistency_rate"] == {"numerator": 2, "denominator": 2, "value": 1.0}


def test_household_consistency_over_two_vintages_of_a_township_code() -> None:
    # Registered in 北海街道 under its old code, living there by the residence registration's new one.
    from tests.linkage.test_households import two_vintages_city

    rates = checked_rates(*two_vintages_city())
    assert rates.metrics["household_consistency_rate"] == {"numerator": 1, "denominator": 1, "value": 1.0}


def test_raw_cells_kept_in_the_raw_values_view_count_as_when_stored_with_the_record() -> None:
    # The flow's standardized table leaves each record's raw cells to int_persons_raw_values
    # (by record_key). The rental department's name column holds only placeholders: it is
    # mapped, though no standard name survives, and only its raw cells show it.
    rows = [{**row, "name": None, "name_raw": "不详"} if row["source"] == "rental" else row for row in ROWS]
    std, entity_map = city(rows)
    expected = compute_rates(std, entity_map, find_household_findings(std, entity_map))
    assert expected.metrics["sources"]["rental"]["field_completeness"]["name"] == 0.0
    with duckdb.connect() as con:
        con.register("std_frame", std)
        con.register("entity_map_frame", entity_map)
        con.execute("create table int_persons_standardized as select * exclude (name_raw) from std_frame")
        con.execute("create table raw_cells as select record_key, source, name_raw from std_frame")
        con.execute(f"create view {RAW_VALUES_VIEW} as select * from raw_cells")
        con.execute("create table entity_map as select * from entity_map_frame")
        with person_records_table(con) as records:
            findings = find_household_findings_db(con, records=records)
            from_db = compute_rates_db(con, findings, records=records)
    assert json.dumps(from_db.metrics, ensure_ascii=False) == json.dumps(expected.metrics, ensure_ascii=False)
