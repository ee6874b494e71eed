"""Household findings on small hand-made cities.

The clean city: one registered family of three (户主 A, 配偶 B, 子女 C) in township
330602001, listed the same way by the civil-affairs roster; C's school places C at home;
a migrant tenant D (hukou 410102, Zhengzhou) rents in 330602003 and has a residence
registration there. Nothing is wrong, so no finding. Each test then breaks one thing.
"""

from __future__ import annotations

import re
from datetime import date

import duckdb
import polars as pl
import pytest

from linkage.fields import CANONICAL_FIELDS
from linkage.households import (
    FINDING_COLUMNS,
    find_household_findings,
    find_household_findings_db,
    mask_id_number,
    mask_name,
    person_records,
    place_names,
    register_households,
)
from tests.linkage.city_builders import city_frames, record

AS_OF = date(2026, 11, 23)
HOME = "330602001"
ELSEWHERE = "330602003"

DEPARTMENTS = {
    "police_hukou": ("公安局户政科", "hukou"),
    "police_hukou_b": ("公安分局户政科", "hukou"),
    "residence_reg": ("公安局流动人口管理科", "residence"),
    "civil_roster": ("民政局", "roster"),
    "rental": ("住建局", "rental"),
    "school": ("教育局", "generic"),
    "health": ("卫生健康委员会", "generic"),
}


def rec(source: str, record_id: str, person_id: str, **fields: object) -> dict[str, object]:
    return record(DEPARTMENTS, source, record_id, person_id, **fields)


def city(rows: list[dict[str, object]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """std and entity_map from record dicts (the person_id goes to the entity map only)."""
    schema = {
        "source": pl.String,
        "department": pl.String,
        "source_kind": pl.String,
        "record_id": pl.String,
        "person_id": pl.String,
        "name": pl.String,
        "id_number": pl.String,
        "sex": pl.String,
        "birth_date": pl.Date,
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
    return city_frames(rows, schema)


def clean_rows() -> list[dict[str, object]]:
    return [
        rec(
            "police_hukou",
            "h1",
            "PA",
            name="王建国",
            sex="M",
            birth_date=date(1980, 3, 1),
            household_id="H001",
            relation_to_head="head",
            hukou_township=HOME,
        ),
        rec(
            "police_hukou",
            "h2",
            "PB",
            name="李秀英",
            sex="F",
            birth_date=date(1982, 5, 2),
            household_id="H001",
            relation_to_head="spouse",
            hukou_township=HOME,
        ),
        rec(
            "police_hukou",
            "h3",
            "PC",
            name="王小明",
            sex="M",
            birth_date=date(2010, 9, 9),
            household_id="H001",
            relation_to_head="child",
            hukou_township=HOME,
        ),
        rec(
            "civil_roster",
            "c1",
            "PA",
            name="王建国",
            household_id="MZ-77",
            relation_to_head="head",
            residence_township=HOME,
        ),
        rec(
            "civil_roster",
            "c2",
            "PB",
            name="李秀英",
            household_id="MZ-77",
            relation_to_head="spouse",
            residence_township=HOME,
        ),
        rec(
            "civil_roster",
            "c3",
            "PC",
            name="王小明",
            household_id="MZ-77",
            relation_to_head="child",
            residence_township=HOME,
        ),
        rec("school", "s1", "PC", name="王小明", residence_township=HOME, birth_date=date(2010, 9, 9)),
        rec(
            "residence_reg",
            "r1",
            "PD",
            name="赵强",
            sex="M",
            birth_date=date(1990, 1, 1),
            hukou_region="410102",
            residence_township=ELSEWHERE,
            registered_at=date(2022, 4, 1),
        ),
        rec(
            "rental",
            "t1",
            "PD",
            name="赵强",
            residence_township=ELSEWHERE,
            house_id="F-12",
            registered_at=date(2022, 3, 15),
        ),
    ]


def in_duckdb(std: pl.DataFrame, entity_map: pl.DataFrame) -> duckdb.DuckDBPyConnection:
    """The run's two tables, as the flow keeps them, in an in-memory database."""
    con = duckdb.connect()
    con.register("std_frame", std)
    con.register("entity_map_frame", entity_map)
    con.execute("create table int_persons_standardized as select * from std_frame")
    con.execute("create table entity_map as select * from entity_map_frame")
    con.unregister("std_frame")
    con.unregister("entity_map_frame")
    return con


def findings_of(rows: list[dict[str, object]]) -> pl.DataFrame:
    return checked_findings(*city(rows))


def checked_findings(std: pl.DataFrame, entity_map: pl.DataFrame) -> pl.DataFrame:
    """The findings of the frame interface, checked row for row against the DuckDB one."""
    findings = find_household_findings(std, entity_map, as_of=AS_OF)
    with in_duckdb(std, entity_map) as con:
        from_db = find_household_findings_db(con, as_of=AS_OF)
        # Its working table is dropped: nothing is left in the run's database.
        assert con.execute("select count(*) from duckdb_tables() where temporary").fetchone()[0] == 0
    assert from_db.equals(findings), (from_db.to_dicts(), findings.to_dicts())
    return findings


def by_kind(findings: pl.DataFrame, kind: str) -> set[tuple[str, str, str]]:
    return set(findings.filter(pl.col("kind") == kind).select("person_id", "source", "record_id").iter_rows())


def test_clean_city_has_no_finding() -> None:
    findings = findings_of(clean_rows())
    assert findings.columns[:5] == list(FINDING_COLUMNS)
    assert findings.is_empty(), findings.to_dicts()


def test_empty_input_gives_empty_frame_with_contract_columns() -> None:
    findings = findings_of([])
    assert findings.columns[:5] == list(FINDING_COLUMNS)
    assert findings.height == 0


def test_hukou_residence_split_names_both_townships_sources_and_since() -> None:
    rows = clean_rows() + [
        # A moved out to ELSEWHERE: the residence registration (2024) is fresher than the old school-era one.
        rec(
            "residence_reg",
            "r2",
            "PA",
            name="王建国",
            residence_township=HOME,
            registered_at=date(2015, 1, 1),
            updated_at=date(2015, 1, 1),
        ),
        rec(
            "residence_reg",
            "r3",
            "PA",
            name="王建国",
            residence_township=ELSEWHERE,
            residence_address="城南街道外山村3号",
            registered_at=date(2024, 2, 1),
            updated_at=date(2024, 2, 1),
        ),
        # the register's address names A's township
        rec(
            "police_hukou",
            "h1x",
            "PX",
            household_id="H077",
            relation_to_head="head",
            hukou_township=HOME,
            hukou_address="北海街道解放北路12号",
        ),
        rec(
            "rental", "t2", "PA", name="王建国", residence_township=ELSEWHERE, registered_at=date(2024, 1, 20)
        ),
    ]
    findings = findings_of(rows)
    # Evidence: the register record and both records placing A in ELSEWHERE; the old one at HOME is not.
    assert by_kind(findings, "hukou_residence_split") == {
        ("PA", "police_hukou", "h1"),
        ("PA", "residence_reg", "r3"),
        ("PA", "rental", "t2"),
    }
    detail = findings.filter(pl.col("kind") == "hukou_residence_split").item(0, "detail")
    assert HOME in detail and ELSEWHERE in detail and "police_hukou" in detail and "residence_reg" in detail
    assert "自2024-01-20起" in detail  # earliest start at the present place
    assert "王建国" not in detail
    # townships named as the extracts' addresses name them, county from GB/T 2260
    assert "越城区北海街道（330602001）" in detail and "越城区城南街道（330602003）" in detail
    # A is registered in ELSEWHERE, so not an unregistered resident there.
    assert by_kind(findings, "unregistered_resident") == set()


def test_split_younger_than_half_a_year_is_not_yet_reported() -> None:
    rows = clean_rows() + [
        rec("residence_reg", "r3", "PA", residence_township=ELSEWHERE, registered_at=date(2026, 8, 1)),
    ]
    assert by_kind(findings_of(rows), "hukou_residence_split") == set()


def test_freshest_evidence_back_home_means_no_split() -> None:
    rows = clean_rows() + [
        rec(
            "residence_reg",
            "r3",
            "PA",
            residence_township=ELSEWHERE,
            registered_at=date(2019, 1, 1),
            updated_at=date(2019, 1, 1),
        ),
        rec(
            "residence_reg",
            "r4",
            "PA",
            residence_township=HOME,
            registered_at=date(2023, 1, 1),
            updated_at=date(2023, 6, 1),
        ),
    ]
    assert by_kind(findings_of(rows), "hukou_residence_split") == set()


def test_multi_household_in_one_register() -> None:
    rows = clean_rows() + [
        rec(
            "police_hukou",
            "h9",
            "PB",
            name="李秀英",
            sex="F",
            birth_date=date(1982, 5, 2),
            household_id="H042",
            relation_to_head="head",
            hukou_township=ELSEWHERE,
        ),
    ]
    findings = findings_of(rows)
    assert by_kind(findings, "multi_household") == {
        ("PB", "police_hukou", "h2"),
        ("PB", "police_hukou", "h9"),
    }
    detail = findings.filter(pl.col("kind") == "multi_household").item(0, "detail")
    # Each household by its masked number: the detail is published city-wide and reaches
    # other departments; the evidence rows carry the numbers in full in the register's report.
    assert "户号H**1" in detail and "户号H**2" in detail
    assert "H001" not in detail and "H042" not in detail


def test_two_registers_numbering_the_same_household_differently_is_not_multi_household() -> None:
    # A second register (another district's system) holds family H001 as "0099-1"; matched by members.
    rows = clean_rows() + [
        rec(
            "police_hukou_b", "b1", "PA", household_id="0099-1", relation_to_head="head", hukou_township=HOME
        ),
        rec(
            "police_hukou_b",
            "b2",
            "PB",
            household_id="0099-1",
            relation_to_head="spouse",
            hukou_township=HOME,
        ),
        rec(
            "police_hukou_b", "b3", "PC", household_id="0099-1", relation_to_head="child", hukou_township=HOME
        ),
    ]
    findings = findings_of(rows)
    assert findings.is_empty(), findings.to_dicts()
    std, entity_map = city(rows)
    register = register_households(person_records(std, entity_map))
    assert register.get_column("household").n_unique() == 1


def test_two_registers_disagreeing_on_a_person_is_multi_household() -> None:
    # The second register has B alone in a different household in another township.
    rows = clean_rows() + [
        rec(
            "police_hukou_b",
            "b2",
            "PB",
            household_id="0100-3",
            relation_to_head="head",
            hukou_township=ELSEWHERE,
        ),
    ]
    assert by_kind(findings_of(rows), "multi_household") == {
        ("PB", "police_hukou", "h2"),
        ("PB", "police_hukou_b", "b2"),
    }


def test_same_household_number_in_two_registers_is_not_a_match_by_itself() -> None:
    # "H001" in register b is a different family (a different scheme): E and F, not A, B, C.
    rows = clean_rows() + [
        rec(
            "police_hukou_b",
            "b5",
            "PE",
            household_id="H001",
            relation_to_head="head",
            hukou_township=ELSEWHERE,
        ),
        rec(
            "police_hukou_b",
            "b6",
            "PF",
            household_id="H001",
            relation_to_head="spouse",
            hukou_township=ELSEWHERE,
        ),
    ]
    findings = findings_of(rows)
    assert findings.is_empty(), findings.to_dicts()
    std, entity_map = city(rows)
    register = register_households(person_records(std, entity_map))
    assert register.get_column("household").n_unique() == 2


def test_roster_missing_member_extra_member_and_other_head() -> None:
    rows = [r for r in clean_rows() if r["record_id"] != "c3"]  # roster omits child C
    rows += [
        # roster lists G, registered in another household H050
        rec("civil_roster", "c4", "PG", name="孙丽", household_id="MZ-77", relation_to_head="other"),
        rec(
            "police_hukou",
            "h50",
            "PG",
            name="孙丽",
            household_id="H050",
            relation_to_head="head",
            hukou_township=HOME,
            sex="F",
            birth_date=date(1950, 1, 1),
        ),
    ]
    findings = findings_of(rows)
    assert by_kind(findings, "roster_conflict") == {
        ("PC", "police_hukou", "h3"),  # in the register's household, not on the roster
        ("PG", "civil_roster", "c4"),  # on the roster, registered elsewhere
        ("PG", "police_hukou", "h50"),  # the register's record of that elsewhere
    }
    conflicts = findings.filter(pl.col("kind") == "roster_conflict")
    g = conflicts.filter(pl.col("record_id") == "c4").row(0, named=True)
    assert "H**0" in g["detail"] and "孙*" in g["detail"] and "孙丽" not in g["detail"]
    assert "H050" not in g["detail"]
    assert g["related_department"] == "公安局户政科"
    c = conflicts.filter(pl.col("record_id") == "h3").row(0, named=True)
    assert c["related_department"] == "民政局" and "MZ*77" in c["detail"] and "MZ-77" not in c["detail"]


def test_roster_with_a_different_head() -> None:
    rows = [r for r in clean_rows() if r["source"] != "civil_roster"] + [
        rec("civil_roster", "c1", "PA", household_id="MZ-77", relation_to_head="spouse"),
        rec("civil_roster", "c2", "PB", household_id="MZ-77", relation_to_head="head"),
        rec("civil_roster", "c3", "PC", household_id="MZ-77", relation_to_head="child"),
    ]
    findings = findings_of(rows)
    # The roster's head entry is the one in question; the register's head entry is the yardstick,
    # and the register's clerk is told through related_department.
    assert by_kind(findings, "roster_conflict") == {("PB", "civil_roster", "c2")}
    assert "户主不一致" in findings.item(0, "detail")
    assert findings.item(0, "related_department") == "公安局户政科"


def test_roster_household_of_people_outside_the_register_is_not_a_conflict() -> None:
    rows = clean_rows() + [
        rec("civil_roster", "c8", "PD", household_id="MZ-90", relation_to_head="head"),
    ]
    assert findings_of(rows).is_empty()


def test_unregistered_tenant_and_pupil() -> None:
    rows = clean_rows() + [
        # H rents in ELSEWHERE, hukou outside the city, no residence registration at all.
        rec(
            "rental", "t5", "PH", name="钱多多", residence_township=ELSEWHERE, registered_at=date(2025, 3, 1)
        ),
        # I attends school living in ELSEWHERE; I's residence registration is for HOME, hukou in HOME too.
        rec("school", "s5", "PI", name="周小雨", residence_township=ELSEWHERE, birth_date=date(2014, 2, 2)),
        # J, an adult, has a health record in ELSEWHERE and no registration: the health
        # list is no school roster (its people are not minors), so no finding.
        rec("health", "k1", "PJ", residence_township=ELSEWHERE, birth_date=date(1970, 1, 1)),
        rec("health", "k2", "PK", residence_township=ELSEWHERE, birth_date=date(2020, 1, 1)),
        rec("residence_reg", "r5", "PI", residence_township=HOME, registered_at=date(2020, 1, 1)),
        rec(
            "police_hukou",
            "h60",
            "PI",
            household_id="H060",
            relation_to_head="head",
            hukou_township=HOME,
            sex="F",
            birth_date=date(1990, 1, 1),
        ),
    ]
    findings = findings_of(rows)
    assert by_kind(findings, "unregistered_resident") == {("PH", "rental", "t5"), ("PI", "school", "s5")}
    detail = findings.filter(pl.col("record_id") == "t5").item(0, "detail")
    assert ELSEWHERE in detail and "租住" in detail and "2025-03-01" in detail


def test_tenant_registered_by_hukou_at_the_place_is_fine() -> None:
    rows = clean_rows() + [rec("rental", "t6", "PA", residence_township=HOME)]
    assert findings_of(rows).is_empty()


def test_household_sanity_kinds() -> None:
    rows = clean_rows() + [
        # H100: two heads
        rec("police_hukou", "x1", "PJ", household_id="H100", relation_to_head="head", hukou_township=HOME),
        rec("police_hukou", "x2", "PK", household_id="H100", relation_to_head="head", hukou_township=HOME),
        # H101: nobody is head
        rec("police_hukou", "x3", "PL", household_id="H101", relation_to_head="spouse", hukou_township=HOME),
        rec("police_hukou", "x4", "PM", household_id="H101", relation_to_head="child", hukou_township=HOME),
        # H102: child born before the head; the head's parent born after the head
        rec(
            "police_hukou",
            "x5",
            "PN",
            household_id="H102",
            relation_to_head="head",
            hukou_township=HOME,
            birth_date=date(1985, 1, 1),
            sex="M",
        ),
        rec(
            "police_hukou",
            "x6",
            "PO",
            household_id="H102",
            relation_to_head="child",
            hukou_township=HOME,
            birth_date=date(1979, 1, 1),
            sex="M",
        ),
        rec(
            "police_hukou",
            "x7",
            "PQ",
            household_id="H102",
            relation_to_head="parent",
            hukou_township=HOME,
            birth_date=date(1990, 1, 1),
            sex="F",
        ),
        # H103: 19-year-old husband (under 22), 20-year-old wife (just legal)
        rec(
            "police_hukou",
            "x8",
            "PR",
            name="陈大",
            household_id="H103",
            relation_to_head="head",
            hukou_township=HOME,
            birth_date=date(2007, 6, 1),
            sex="M",
        ),
        rec(
            "police_hukou",
            "x9",
            "PS",
            household_id="H103",
            relation_to_head="spouse",
            hukou_township=HOME,
            birth_date=date(2006, 11, 23),
            sex="F",
        ),
    ]
    findings = findings_of(rows)
    assert by_kind(findings, "two_heads") == {("PJ", "police_hukou", "x1"), ("PK", "police_hukou", "x2")}
    assert by_kind(findings, "no_head") == {("PL", "police_hukou", "x3"), ("PM", "police_hukou", "x4")}
    assert by_kind(findings, "child_older_than_parent") == {
        ("PO", "police_hukou", "x6"),
        ("PQ", "police_hukou", "x7"),
    }
    assert by_kind(findings, "spouse_under_legal_age") == {("PR", "police_hukou", "x8")}
    detail = findings.filter(pl.col("kind") == "spouse_under_legal_age").item(0, "detail")
    assert "19岁" in detail and "22" in detail and "陈*" in detail and "陈大" not in detail
    # Ages and the direction of a disagreement, never a birth date: a birth date beside a
    # masked id (330602********123X hides exactly its eight birth-date digits) gives it back.
    older = findings.filter(pl.col("kind") == "child_older_than_parent").sort("record_id")
    assert older.get_column("detail").to_list() == [
        "子女年长于父母：police_hukou 户号H**2中子女PO的出生日期不晚于户主PN的出生日期",
        "子女年长于父母：police_hukou 户号H**2中父母PQ的出生日期不早于户主PN的出生日期",
    ]
    birth_dates = {r["birth_date"].isoformat() for r in rows if r.get("birth_date")}
    for text in findings.get_column("detail").to_list():
        assert not any(birth in text for birth in birth_dates), text
        assert not re.search(r"H1\d\d", text), text


def test_head_registered_twice_is_a_duplicate_not_two_heads() -> None:
    rows = clean_rows() + [
        rec("police_hukou", "h1dup", "PA", household_id="H001", relation_to_head="head", hukou_township=HOME),
    ]
    assert findings_of(rows).is_empty()


def test_township_names_counted_in_duckdb_by_address_prefix() -> None:
    # DuckDB counts addresses by their first 14 characters: the longest township the pattern
    # takes is 12 characters and a 2-character suffix, so the names must come out the same.
    long_town = "甲乙丙丁戊己庚辛壬癸子丑街道"  # 12 + 街道: still a township
    too_long = "甲乙丙丁戊己庚辛壬癸子丑寅街道"  # 13 + 街道: not one
    addresses = {
        HOME: ["北海街道解放北路10号", "北海街道解放北路12号", long_town + "1号"],
        ELSEWHERE: [long_town + "2号", long_town + "3号", "城南街道9号"],
        "330602005": [too_long + "1号"],
    }
    rows = [
        rec("residence_reg", f"r{town}{i}", f"P{town}{i}", residence_township=town, residence_address=address)
        for town, listed in addresses.items()
        for i, address in enumerate(listed)
    ]
    std, entity_map = city(rows)
    names = place_names(person_records(std, entity_map))
    assert names == {HOME: "越城区北海街道", ELSEWHERE: "越城区" + long_town}
    from linkage.households import _DuckDBRecords, _names_from_addresses

    with in_duckdb(std, entity_map) as con:
        assert (
            _names_from_addresses(_DuckDBRecords(con, "unused", "int_persons_standardized").address_counts())
            == names
        )


def test_records_missing_from_entity_map_are_ignored() -> None:
    std, entity_map = city(clean_rows() + [rec("rental", "t9", "PZ", residence_township=ELSEWHERE)])
    findings = checked_findings(std, entity_map.filter(pl.col("person_id") != "PZ"))
    assert findings.is_empty()


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("330602199001011234", "330602********1234"),
        ("33060219900101123X", "330602********123X"),
        (None, None),
    ],
)
def test_mask_id_number(value: str | None, masked: str | None) -> None:
    assert mask_id_number(value) == masked


def test_mask_name() -> None:
    assert mask_name("张三丰") == "张**"
    assert mask_name("张") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"


def test_on_records_standardized_by_the_real_stage() -> None:
    """Raw rows as ingest hands them over, through standardize_records: codes, dates and
    relations come out of the department's own spellings."""
    from linkage.standardize import standardize_records

    raw_rows = [
        # the register: a couple in 城南街道 (户主 / 妻 as the police write them)
        dict(
            source="police_hukou",
            department="公安局户政科",
            source_kind="hukou",
            record_id="H1",
            name="王建国",
            sex="男",
            birth_date="19800301",
            hukou_address="浙江省绍兴市越城区城南街道外山村12号",
            hukou_region="330602003",
            household_id="0001",
            relation_to_head="户主",
            updated_at="2025-01-01",
        ),
        dict(
            source="police_hukou",
            department="公安局户政科",
            source_kind="hukou",
            record_id="H2",
            name="李秀英",
            sex="女",
            birth_date="1982/5/2",
            hukou_address="浙江省绍兴市越城区城南街道外山村12号",
            hukou_region="330602003",
            household_id="0001",
            relation_to_head="妻",
            updated_at="2025-01-01",
        ),
        # he has lived in 北海街道 since 2020 (residence registration, Excel-style date)
        dict(
            source="residence_reg",
            department="公安局流动人口管理科",
            source_kind="residence",
            record_id="R1",
            name="王建国",
            sex="男",
            birth_date="1980-03-01",
            residence_address="绍兴市越城区北海街道解放北路8号",
            residence_region="330602001",
            registered_at="2020-03-04",
        ),
        # a tenant in 北海街道 known to nobody else
        dict(
            source="rental",
            department="住建局",
            source_kind="rental",
            record_id="T1",
            name="赵强",
            residence_address="越城区北海街道解放北路10号",
            residence_region="330602001",
            registered_at="2024-06-01",
        ),
    ]
    columns = ["source", "department", "source_kind", *CANONICAL_FIELDS]
    raw = pl.DataFrame(
        [{c: r.get(c) for c in columns} for r in raw_rows], schema={c: pl.String for c in columns}
    )
    raw = raw.with_columns(
        record_key=pl.int_range(pl.len(), dtype=pl.Int64),
        file=pl.lit("x.csv"),
        row_number=pl.int_range(1, pl.len() + 1, dtype=pl.Int32),
        file_sha256=pl.lit("0" * 64),
        load_batch=pl.lit("test"),
    )
    std = standardize_records(raw)
    entity_map = std.select("record_key", "source", "record_id").with_columns(
        person_id=pl.Series(["PA", "PB", "PA", "PT"])
    )
    findings = checked_findings(std, entity_map)
    assert by_kind(findings, "hukou_residence_split") == {
        ("PA", "police_hukou", "H1"),
        ("PA", "residence_reg", "R1"),
    }
    detail = findings.filter(pl.col("kind") == "hukou_residence_split").item(0, "detail")
    assert (
        "城南街道（330602003）" in detail and "北海街道（330602001）" in detail and "自2020-03-04起" in detail
    )
    assert by_kind(findings, "unregistered_resident") == {("PT", "rental", "T1")}
    # the couple's relations were understood (户主/妻): no sanity finding
    assert set(findings.get_column("kind")) == {"hukou_residence_split", "unregistered_resident"}


def test_registered_in_two_households_and_living_at_the_other_is_not_split() -> None:
    # PB's freshest register record is at HOME; PB lives at ELSEWHERE, where a second,
    # older register record of PB sits (一人多户): not 人户分离. Without that record PB is split.
    living_elsewhere = rec(
        "residence_reg", "r9", "PB", residence_township=ELSEWHERE,
        registered_at=date(2020, 1, 1), updated_at=date(2020, 1, 1),
    )
    second_register = rec(
        "police_hukou", "h9", "PB", name="李秀英", sex="F", birth_date=date(1982, 5, 2),
        household_id="H042", relation_to_head="head", hukou_township=ELSEWHERE,
        updated_at=date(2001, 1, 1),
    )
    rows = clean_rows() + [living_elsewhere]
    assert ("PB", "residence_reg", "r9") in by_kind(findings_of(rows), "hukou_residence_split")
    assert by_kind(findings_of(rows + [second_register]), "hukou_residence_split") == set()


def test_two_households_of_one_register_stay_two_when_another_register_matches_both() -> None:
    # The police register has B in two households (H001 with A, H042 with C): 一人多户. A second
    # register lists A, B and C in one household X1, which shares 2 of 3 members with each: it
    # may match one of them, never join the register's two households into one.
    rows = [
        rec("police_hukou", "a1", "PA", household_id="H001", relation_to_head="head", hukou_township=HOME),
        rec("police_hukou", "a2", "PB", household_id="H001", relation_to_head="spouse", hukou_township=HOME),
        rec("police_hukou", "a3", "PB", household_id="H042", relation_to_head="head", hukou_township=HOME),
        rec("police_hukou", "a4", "PC", household_id="H042", relation_to_head="child", hukou_township=HOME),
        rec("police_hukou_b", "b1", "PA", household_id="X1", relation_to_head="head", hukou_township=HOME),
        rec("police_hukou_b", "b2", "PB", household_id="X1", relation_to_head="spouse", hukou_township=HOME),
        rec("police_hukou_b", "b3", "PC", household_id="X1", relation_to_head="child", hukou_township=HOME),
    ]
    multi = by_kind(findings_of(rows), "multi_household")
    assert {("PB", "police_hukou", "a2"), ("PB", "police_hukou", "a3")} <= multi
    # X1 is H001 told by the second register (A and B); it puts C there too, where the police
    # register has C in H042: that disagreement is C's 一人多户, A's two records are one household.
    assert {person for person, _, _ in multi} == {"PB", "PC"}
    std, entity_map = city(rows)
    register = register_households(person_records(std, entity_map))
    assert register.filter(pl.col("source") == "police_hukou").get_column("household").n_unique() == 2


def test_split_counts_the_present_stay_not_an_earlier_one_at_the_same_place() -> None:
    # A lived in ELSEWHERE from 2015, came back home in 2019, and went to ELSEWHERE again on
    # 2026-08-01: away for under half a year, not yet 人户分离, and never "since 2015".
    rows = clean_rows() + [
        rec("residence_reg", "r3", "PA", residence_township=ELSEWHERE,
            registered_at=date(2015, 1, 1), updated_at=date(2015, 1, 1)),
        rec("residence_reg", "r4", "PA", residence_township=HOME,
            registered_at=date(2019, 1, 1), updated_at=date(2019, 1, 1)),
        rec("residence_reg", "r5", "PA", residence_township=ELSEWHERE,
            registered_at=date(2026, 8, 1), updated_at=date(2026, 8, 1)),
    ]
    assert by_kind(findings_of(rows), "hukou_residence_split") == set()
    # Gone again since 2025-03-01: split since then; the 2015 record is not of this stay.
    rows[-1] = rec("residence_reg", "r5", "PA", residence_township=ELSEWHERE,
                   registered_at=date(2025, 3, 1), updated_at=date(2025, 3, 1))
    findings = findings_of(rows)
    assert by_kind(findings, "hukou_residence_split") == {
        ("PA", "police_hukou", "h1"),
        ("PA", "residence_reg", "r5"),
    }
    assert "自2025-03-01起" in findings.item(0, "detail")


def test_split_counts_from_the_hukou_registration_when_it_is_newer_than_the_residence() -> None:
    # A has lived in ELSEWHERE since 2015; the hukou was moved (迁入) to 330602005 on 2026-09-01:
    # away from that township for under half a year, so not yet 人户分离.
    moved_in = "330602005"
    rows = [
        rec("police_hukou", "h1", "PA", household_id="H009", relation_to_head="head",
            hukou_township=moved_in, registered_at=date(2026, 9, 1), updated_at=date(2026, 9, 1)),
        rec("residence_reg", "r1", "PA", residence_township=ELSEWHERE, registered_at=date(2015, 1, 1)),
    ]
    assert by_kind(findings_of(rows), "hukou_residence_split") == set()
    # Moved in on 2024-05-01: split, since the hukou was registered there, not since 2015.
    rows[0] = rec("police_hukou", "h1", "PA", household_id="H009", relation_to_head="head",
                  hukou_township=moved_in, registered_at=date(2024, 5, 1), updated_at=date(2024, 5, 1))
    findings = findings_of(rows)
    assert by_kind(findings, "hukou_residence_split") == {
        ("PA", "police_hukou", "h1"),
        ("PA", "residence_reg", "r1"),
    }
    assert "自2024-05-01起" in findings.item(0, "detail")


def two_vintages_city() -> tuple[pl.DataFrame, pl.DataFrame]:
    """北海街道 under two codes: the register's 330602001, the residence registration's
    newer 330602101, each record's address naming the same street. Standardized by the
    real stage, which learns that both codes are one township."""
    from linkage.standardize import standardize_records

    def raw(source: str, kind: str, record_id: str, **fields: str) -> dict[str, str]:
        return dict(source=source, department=DEPARTMENTS[source][0], source_kind=kind, record_id=record_id, **fields)

    raw_rows = [
        # A: registered in 北海街道 (old code), living there by the residence registration (new code)
        raw("police_hukou", "hukou", "H1", name="王建国", sex="男", birth_date="19800301",
            hukou_address="浙江省绍兴市越城区北海街道解放北路12号", hukou_region="330602001",
            household_id="0001", relation_to_head="户主", updated_at="2025-01-01"),
        raw("residence_reg", "residence", "R1", name="王建国", sex="男", birth_date="1980-03-01",
            residence_address="绍兴市越城区北海街道解放北路12号", residence_region="330602101",
            registered_at="2020-03-04"),
        # T: rents in 北海街道 (old code), registered as a resident there (new code)
        raw("rental", "rental", "T1", name="赵强", residence_address="越城区北海街道胜利路3号",
            residence_region="330602001", registered_at="2024-06-01"),
        raw("residence_reg", "residence", "R2", name="赵强", residence_address="越城区北海街道胜利路3号",
            residence_region="330602101", registered_at="2024-05-01"),
    ]
    columns = ["source", "department", "source_kind", *CANONICAL_FIELDS]
    frame = pl.DataFrame(
        [{c: r.get(c) for c in columns} for r in raw_rows], schema={c: pl.String for c in columns}
    ).with_columns(record_key=pl.int_range(pl.len(), dtype=pl.Int64))
    std = standardize_records(frame, as_of=AS_OF)
    entity_map = std.select("record_key", "source", "record_id").with_columns(
        person_id=pl.Series(["PA", "PA", "PT", "PT"])
    )
    return std, entity_map


def test_two_vintages_of_a_township_code_are_no_split_and_no_unregistered_resident() -> None:
    std, entity_map = two_vintages_city()
    findings = checked_findings(std, entity_map)
    assert by_kind(findings, "hukou_residence_split") == set()
    assert by_kind(findings, "unregistered_resident") == set()
    assert findings.is_empty(), findings.to_dicts()
    # each extract's own code stays in the region; the township is one code
    assert std.get_column("residence_region").to_list()[1:] == ["330602101", "330602001", "330602101"]
    towns = pl.concat([std.get_column("hukou_township"), std.get_column("residence_township")]).drop_nulls()
    assert set(towns) == {"330602001"}
