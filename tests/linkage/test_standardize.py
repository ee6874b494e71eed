"""standardize_records end to end on a small raw_records frame with every column of DESIGN.md section 1."""

from datetime import date

import polars as pl
import pytest

from linkage.id_numbers import check_character
from linkage.standardize import standardization_metrics, standardize_records

AS_OF = date(2026, 11, 23)
ZHANG_ID = "33060219900102123" + check_character("33060219900102123")  # synthetic
WRONG_ID = ZHANG_ID[:17] + ("0" if ZHANG_ID[17] != "0" else "1")

RAW_COLUMNS = [
    "record_key", "source", "department", "source_kind", "file", "row_number", "file_sha256", "load_batch",
    "record_id", "name", "id_number", "sex", "birth_date", "ethnicity", "phone", "hukou_address", "hukou_region",
    "residence_address", "residence_region", "household_id", "relation_to_head", "house_id", "employer",
    "registered_at", "updated_at",
]

DESIGN_COLUMNS = [
    "record_key", "source", "department", "source_kind", "record_id", "file", "row_number",
    "name", "name_raw", "name_script", "surname", "given_name", "name_pinyin", "surname_pinyin",
    "name_pinyin_sorted", "name_initials", "id_number", "id_number_raw", "id_type", "id_valid", "id_upgraded",
    "id_birth_date", "id_sex", "id_region", "birth_date", "birth_date_raw", "birth_date_flag",
    "birth_date_conflicts_id", "sex", "sex_conflicts_id", "ethnicity", "phone", "phone_type", "hukou_address",
    "residence_address", "hukou_address_raw", "residence_address_raw", "hukou_region", "residence_region",
    "hukou_township", "residence_township", "household_id", "relation_to_head", "relation_to_head_raw",
    "house_id", "employer", "registered_at", "updated_at",
]


def raw_frame() -> pl.DataFrame:
    rows = [
        # police household register: full address with prefixes and a township code
        dict(source="police_hukou", department="公安局户政科", source_kind="hukou", record_id="H1", name="張偉",
             id_number=ZHANG_ID, sex="男", birth_date="1990-01-02", ethnicity="汉", phone="+86 138-1234-5678",
             hukou_address="浙江省绍兴市越城区城南街道外山村12号", hukou_region="330602003", household_id=" 0001 ",
             relation_to_head="户主", registered_at="2010/5/1", updated_at="20260101"),
        # same register, 15-digit id, address without prefix and with Chinese numerals, no region code
        dict(source="police_hukou", department="公安局户政科", source_kind="hukou", record_id="H2", name="单雄信",
             id_number="330602900102123", sex="1", birth_date="19900102", ethnicity="01", phone="0575-88001234",
             hukou_address="越城区城南街道外山村十二号", household_id="0001", relation_to_head="子"),
        # residence registration: romanized name, passport, Excel serial date, county code only
        dict(source="residence", department="流动人口服务中心", source_kind="residence", record_id="R1",
             name="ZHANG WEI", id_number="E12345678", sex="female", birth_date="32875",
             residence_address="绍兴市越城区城南街道外山村十二号", residence_region="330602", house_id="F-17",
             employer=" 某某公司 ", registered_at="2020-03-04T00:00:00"),
        # a roster row full of problems: placeholder name, wrong check character, 2月30日, unusable phone
        dict(source="civil_roster", department="民政局", source_kind="roster", record_id="C1", name="无",
             id_number=f"{WRONG_ID[:6]} {WRONG_ID[6:]}", sex="女", birth_date="1990年2月30日", phone="12345",
             hukou_address="城南街道外山村3号", residence_address="无", relation_to_head="02"),
        # id says male born 1990-01-02, record says female born 1991-05-06
        dict(source="civil_roster", department="民政局", source_kind="roster", record_id="C2", name="张玮",
             id_number=ZHANG_ID, sex="F", birth_date="1991-05-06", relation_to_head="其他"),
    ]
    frame = pl.DataFrame(
        [{c: r.get(c) for c in RAW_COLUMNS if c not in ("record_key", "file", "row_number", "file_sha256", "load_batch")} for r in rows],
        schema={c: pl.String for c in RAW_COLUMNS if c not in ("record_key", "file", "row_number", "file_sha256", "load_batch")},
    )
    return frame.with_columns(
        pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("record_key"),
        pl.lit("extracts/x.csv").alias("file"),
        pl.int_range(1, frame.height + 1, dtype=pl.Int32).alias("row_number"),
        pl.lit("ab" * 32).alias("file_sha256"),
        pl.lit("20261123T020000Z-ab12cd").alias("load_batch"),
    ).select(RAW_COLUMNS)


@pytest.fixture(scope="module")
def std() -> pl.DataFrame:
    return standardize_records(raw_frame(), as_of=AS_OF)


def by_id(std: pl.DataFrame, record_id: str) -> dict:
    return std.filter(pl.col("record_id") == record_id).row(0, named=True)


def test_every_design_column_present_same_order_and_height(std):
    assert set(DESIGN_COLUMNS) <= set(std.columns)
    assert std.height == 5
    assert std.get_column("record_key").to_list() == [1, 2, 3, 4, 5]
    assert std.schema["id_birth_date"] == pl.Date and std.schema["registered_at"] == pl.Date
    assert std.schema["id_valid"] == pl.Boolean


def test_register_row(std):
    r = by_id(std, "H1")
    assert (r["name"], r["name_raw"], r["surname"], r["name_pinyin"]) == ("张伟", "張偉", "张", "zhang wei")
    assert (r["id_type"], r["id_valid"], r["id_sex"], r["id_region"]) == ("resident_id", True, "M", "330602")
    assert (r["birth_date"], r["birth_date_conflicts_id"], r["sex"], r["sex_conflicts_id"]) == (date(1990, 1, 2), False, "M", False)
    assert (r["ethnicity"], r["phone"], r["phone_type"]) == ("汉族", "13812345678", "mobile")
    assert (r["hukou_address"], r["hukou_region"], r["hukou_township"]) == ("城南街道外山村12号", "330602003", "330602003")
    assert (r["household_id"], r["relation_to_head"]) == ("0001", "head")
    assert (r["registered_at"], r["updated_at"]) == (date(2010, 5, 1), date(2026, 1, 1))


def test_township_code_learned_from_the_extract_applies_to_an_address_only_row(std):
    r = by_id(std, "H2")
    assert r["hukou_address"] == by_id(std, "H1")["hukou_address"]  # with and without prefix: alike
    assert (r["hukou_region"], r["hukou_township"], r["hukou_region_source"]) == ("330602003", "330602003", "learned_township")
    # a 6-digit county code plus the township in the address gives the township
    r = by_id(std, "R1")
    assert (r["residence_region"], r["residence_township"]) == ("330602003", "330602003")
    # no county named at all: the township name is known in one county of the batch only
    assert by_id(std, "C1")["hukou_region"] == "330602003"


def test_upgrade_and_cross_source_forms_meet(std):
    h1, h2, r1 = by_id(std, "H1"), by_id(std, "H2"), by_id(std, "R1")
    assert h2["id_number"] == ZHANG_ID and h2["id_upgraded"] is True
    assert r1["name"] == "ZHANG WEI" and r1["name_pinyin_sorted"] == h1["name_pinyin_sorted"]
    assert (r1["id_type"], r1["id_valid"], r1["birth_date"], r1["sex"]) == ("passport", None, date(1990, 1, 2), "F")
    assert (r1["house_id"], r1["employer"], r1["registered_at"]) == ("F-17", "某某公司", date(2020, 3, 4))
    assert h2["name_pinyin"] == "shan xiong xin"


def test_problems_are_flagged_not_dropped(std):
    r = by_id(std, "C1")
    assert r["name"] is None and r["name_raw"] == "无"
    assert (r["id_number"], r["id_valid"]) == (WRONG_ID, False)
    assert (r["birth_date"], r["birth_date_flag"]) == (None, "impossible")
    assert (r["phone"], r["residence_address"], r["relation_to_head"]) == (None, None, "head")
    c2 = by_id(std, "C2")
    assert (c2["birth_date_conflicts_id"], c2["sex_conflicts_id"], c2["relation_to_head"]) == (True, True, "other")


def test_metrics_count_filled_standardized_flagged(std):
    m = standardization_metrics(std)
    assert m.columns[:5] == ["source", "field", "filled", "standardized", "flagged_invalid"]
    got = {(r["source"], r["field"]): (r["filled"], r["standardized"], r["flagged_invalid"]) for r in m.iter_rows(named=True)}
    assert got[("police_hukou", "name")] == (2, 1, 0)  # 張偉 → 张伟
    assert got[("police_hukou", "id_number")] == (2, 1, 0)  # the 15-digit upgrade
    assert got[("civil_roster", "name")] == (2, 1, 1)  # 无 → NULL
    assert got[("civil_roster", "id_number")] == (2, 1, 1)  # space stripped, check character wrong
    assert got[("civil_roster", "birth_date")] == (2, 1, 2)  # 2月30日 → NULL; 1991-05-06 unchanged but against the id
    assert got[("civil_roster", "sex")] == (2, 1, 1)  # 女 → F; F (unchanged) against a male id
    assert got[("civil_roster", "phone")] == (1, 1, 1)
    assert got[("residence", "residence_region")] == (1, 1, 0)  # 330602 → 330602003
    derived = m.filter((pl.col("source") == "police_hukou") & (pl.col("field") == "hukou_region"))["derived"].item()
    assert derived == 1  # H2's region came from its address


def test_stored_rows_keep_the_metrics_without_the_raw_copies(std):
    from linkage.fields import RECORD_PROVENANCE_COLUMNS
    from linkage.standardize import RAW_VALUE_COLUMNS, STANDARDIZATION_FLAGS, stored_standardized

    stored = stored_standardized(std)
    left_out = [*RAW_VALUE_COLUMNS, *RECORD_PROVENANCE_COLUMNS]
    assert not set(left_out) & set(stored.columns)
    assert stored.get_column(STANDARDIZATION_FLAGS).dtype == pl.UInt64
    assert stored.drop(STANDARDIZATION_FLAGS).equals(std.drop(left_out))
    # What a later night reads back of a row (its source and flags) gives the same figures.
    assert standardization_metrics(stored.select("source", STANDARDIZATION_FLAGS)).equals(standardization_metrics(std))
    # C1's name 无 was given (bit 0) and lost (bits 1 and 2: standardized, flagged invalid).
    flags = stored.filter(pl.col("record_id") == "C1").get_column(STANDARDIZATION_FLAGS).item()
    assert flags & 0b1111 == 0b0111


def test_empty_input():
    empty = raw_frame().clear()
    out = standardize_records(empty, as_of=AS_OF)
    assert out.height == 0 and set(DESIGN_COLUMNS) <= set(out.columns)
    assert standardization_metrics(out).height == 0


def frame_of(rows: list[dict]) -> pl.DataFrame:
    base = dict(source="s", department="d", source_kind="generic", name="张伟")
    records = [{**base, "record_id": str(i), **r} for i, r in enumerate(rows)]
    frame = pl.DataFrame(records, schema={c: pl.String for c in records[0]} | {c: pl.String for r in records for c in r})
    return frame.with_columns(pl.int_range(1, frame.height + 1, dtype=pl.Int64).alias("record_key"))


@pytest.mark.parametrize(
    ("rows", "expected_region", "expected_source"),
    [
        # a city code plus an address naming the county: the county, finer
        ([dict(hukou_region="330600", hukou_address="越城区人民路1号")], "330602", "code_table"),
        # a county code and an address naming another county: the source's own code field wins
        ([dict(hukou_region="330603", hukou_address="越城区人民路1号")], "330603", "extract"),
        # a cell that is no code: the address decides
        ([dict(hukou_region="越城区", hukou_address="浙江省绍兴市越城区人民路1号")], "330602", "code_table"),
        # a 12-digit statistical code keeps its township part
        ([dict(hukou_region="330602003000", hukou_address="人民路1号")], "330602003", "extract"),
    ],
)
def test_region_precedence(rows, expected_region, expected_source):
    r = standardize_records(frame_of(rows), as_of=AS_OF).row(0, named=True)
    assert (r["hukou_region"], r["hukou_region_source"]) == (expected_region, expected_source)


def test_township_learning_uses_the_most_seen_vintage_and_ignores_contradicting_rows():
    rows = [
        # two vintages of 城南街道's code; 003 is seen twice, 010 once
        dict(hukou_region="330602003", hukou_address="越城区城南街道甲村1号"),
        dict(hukou_region="330602003", hukou_address="城南街道乙村2号"),
        dict(hukou_region="330602010", hukou_address="城南街道丙村3号"),
        # the address names 柯桥区 but the code is 越城区's: it teaches nothing
        dict(hukou_region="330602099", hukou_address="柯桥区城南街道丁村4号"),
        dict(hukou_region="330602099", hukou_address="柯桥区城南街道丁村4号"),
        dict(hukou_region="330602099", hukou_address="柯桥区城南街道丁村4号"),
        # address only: learned code
        dict(residence_address="绍兴市越城区城南街道外山村十二号"),
        # 柯桥区's 城南街道 was never seen with a code: county level only
        dict(residence_address="柯桥区城南街道戊村5号"),
    ]
    std = standardize_records(frame_of(rows), as_of=AS_OF)
    assert std["residence_region"].to_list()[-2:] == ["330602003", "330603"]
    assert std["residence_township"].to_list()[-2:] == ["330602003", None]
    assert std["hukou_region"].to_list()[:3] == ["330602003", "330602003", "330602010"]  # given codes are kept


def test_two_vintages_of_a_township_code_are_one_township():
    rows = [
        # the register gives 北海街道's old code, the residence registration its new one
        dict(source="police_hukou", hukou_region="330602001", hukou_address="越城区北海街道解放北路12号"),
        dict(source="police_hukou", hukou_region="330602001", hukou_address="越城区北海街道胜利路3号"),
        dict(source="residence_reg", residence_region="330602101", residence_address="越城区北海街道解放北路12号"),
        # the new code without an address naming the township: still 北海街道
        dict(source="rental", residence_region="330602101", residence_address="解放北路14号"),
        # 城南街道 in one vintage only
        dict(source="police_hukou", hukou_region="330602003", hukou_address="越城区城南街道外山村1号"),
    ]
    std = standardize_records(frame_of(rows), as_of=AS_OF)
    townships = pl.concat([std["hukou_township"].head(2), std["residence_township"].slice(2, 2), std["hukou_township"].tail(1)])
    assert townships.to_list() == ["330602001", "330602001", "330602001", "330602001", "330602003"]
    # the region keeps the code each extract gave
    assert std["residence_region"].to_list()[2:4] == ["330602101", "330602101"]
    assert std["residence_region_source"].to_list()[2:4] == ["extract", "extract"]
    # a row standardized alone with the batch's context gets the same township
    from linkage.standardize import learn_region_context

    raw = frame_of(rows)
    context = learn_region_context(raw)
    one_by_one = [standardize_records(raw.slice(i, 1), as_of=AS_OF, context=context) for i in range(raw.height)]
    assert pl.concat(one_by_one).equals(std)


def test_a_code_seen_under_two_names_is_left_as_given():
    rows = [
        # 330602101 is 北海街道's new code in one extract and 府山街道's in another: it is left
        # as given, and so is 北海街道's other code
        dict(hukou_region="330602001", hukou_address="越城区北海街道解放北路12号"),
        dict(hukou_region="330602001", hukou_address="越城区北海街道胜利路3号"),
        dict(residence_region="330602101", residence_address="越城区北海街道解放北路12号"),
        dict(residence_region="330602101", residence_address="越城区府山街道府山横街1号"),
        # 府山街道 with a code of its own, seen more often
        dict(hukou_region="330602002", hukou_address="越城区府山街道府山横街2号"),
        dict(hukou_region="330602002", hukou_address="越城区府山街道府山横街3号"),
        # while 城南街道's two codes, each seen with that name only, are one township
        dict(hukou_region="330602003", hukou_address="越城区城南街道外山村1号"),
        dict(hukou_region="330602003", hukou_address="越城区城南街道外山村2号"),
        dict(residence_region="330602103", residence_address="越城区城南街道外山村1号"),
    ]
    std = standardize_records(frame_of(rows), as_of=AS_OF)
    assert std["hukou_township"].to_list()[:2] == ["330602001", "330602001"]
    assert std["residence_township"].to_list()[2:4] == ["330602101", "330602101"]
    assert std["hukou_township"].to_list()[4:6] == ["330602002", "330602002"]
    assert std["hukou_township"].to_list()[6:8] == ["330602003", "330602003"]
    assert std["residence_township"].to_list()[8] == "330602003"


def test_township_aliases_learned_from_the_pairs():
    from linkage.regions import learn_township_aliases, learn_township_codes

    pairs = pl.DataFrame(
        {
            "county_code": ["330602"] * 7,
            "township_name": ["北海街道", "北海街道", "北海街道", "府山街道", "府山街道", "府山街道", "城南街道"],
            # 北海街道: 001 (twice) and 101; 府山街道: 002 and 102, and 102 is also seen as 城南街道
            "township_code": ["330602001", "330602001", "330602101", "330602002", "330602102", "330602002", "330602102"],
        }
    )
    learned = learn_township_codes(pairs)
    assert learn_township_aliases(pairs, learned).rows() == [("330602101", "330602001")]
    # A chosen code seen under two names is no township to map others to.
    chosen_ambiguous = pl.DataFrame(
        {
            "county_code": ["330602"] * 4,
            "township_name": ["北海街道", "北海街道", "北海街道", "府山街道"],
            "township_code": ["330602001", "330602001", "330602101", "330602001"],
        }
    )
    assert learn_township_aliases(chosen_ambiguous, learn_township_codes(chosen_ambiguous)).is_empty()


def test_rows_standardized_one_at_a_time_with_the_batch_context_equal_the_batch(std):
    from linkage.standardize import combine_standardization_metrics, learn_region_context

    raw = raw_frame()
    context = learn_region_context(raw)
    one_by_one = [standardize_records(raw.slice(i, 1), as_of=AS_OF, context=context) for i in range(raw.height)]
    assert pl.concat(one_by_one).equals(std)
    # Counts add up: the metrics of the slices are those of the batch, and less a slice is the rest.
    parts = [standardization_metrics(part) for part in one_by_one]
    assert combine_standardization_metrics(*parts).equals(standardization_metrics(std))
    rest = combine_standardization_metrics(standardization_metrics(std), minus=parts[:1])
    assert rest.equals(combine_standardization_metrics(*parts[1:]))
    # Without the batch's context a lone row cannot learn its township from the others.
    alone = pl.concat([standardize_records(raw.slice(i, 1), as_of=AS_OF) for i in range(raw.height)])
    assert not alone.get_column("residence_region").equals(std.get_column("residence_region"))


def test_slices_with_the_batch_names_equal_the_batch(std):
    from linkage.names import standardize_names
    from linkage.standardize import learn_region_context

    raw = raw_frame()
    context = learn_region_context(raw)
    batch_names = standardize_names(raw.get_column("name"))
    halves = [raw.slice(0, 3), raw.slice(3)]
    with_names = [standardize_records(part, as_of=AS_OF, context=context, names=batch_names) for part in halves]
    assert pl.concat(with_names).equals(std)
    # Names the given table lacks are standardized on the spot, not left empty.
    first_only = standardize_names(raw.slice(0, 1).get_column("name"))
    assert first_only.height < batch_names.height
    assert standardize_records(raw, as_of=AS_OF, context=context, names=first_only).equals(std)
