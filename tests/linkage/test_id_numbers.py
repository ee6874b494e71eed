"""Identity numbers (GB 11643-1999). All numbers are synthetic: built here with a computed check character."""

from datetime import date

import polars as pl
import pytest

from linkage.id_numbers import EARLIEST_BIRTH, check_character, standardize_id_numbers, upgrade_15_to_18

AS_OF = date(2026, 11, 23)


def make_id(first17: str) -> str:
    return first17 + check_character(first17)


MALE_1990 = make_id("33060219900102123")  # 17th digit 3: odd → male
FEMALE_1985 = make_id("11010519850704002")  # 17th digit 2: even → female


def std(raw):
    return standardize_id_numbers(pl.DataFrame({"id_number": [raw]}, schema={"id_number": pl.String}), as_of=AS_OF).row(
        0, named=True
    )


def test_check_character_matches_the_standard_worked_example():
    # GB 11643-1999 annex example: 11010519491231002 → X
    assert check_character("11010519491231002") == "X"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (MALE_1990, MALE_1990),
        (f" {MALE_1990[:6]} {MALE_1990[6:14]} {MALE_1990[14:]} ", MALE_1990),  # spaces
        (f"{MALE_1990[:6]}-{MALE_1990[6:14]}-{MALE_1990[14:]}", MALE_1990),  # dashes
        ("".join(chr(ord(c) + 0xFEE0) for c in MALE_1990), MALE_1990),  # full-width digits
        ("11010519491231002x", "11010519491231002X"),  # x → X
        ("330602900102123", upgrade_15_to_18("330602900102123")),  # 15 → 18
        ("无", None),
        ("-", None),
        (None, None),
    ],
)
def test_normalization(raw, expected):
    assert std(raw)["id_number"] == expected


def test_15_digit_upgrade_inserts_century_and_check_character():
    assert upgrade_15_to_18("330602900102123") == MALE_1990
    row = std("330602900102123")
    assert row["id_upgraded"] is True and row["id_valid"] is True
    assert row["id_birth_date"] == date(1990, 1, 2)


@pytest.mark.parametrize(
    ("raw", "id_type", "valid"),
    [
        (MALE_1990, "resident_id", True),
        (MALE_1990[:17] + ("0" if MALE_1990[17] != "0" else "1"), "resident_id", False),  # wrong check character
        (make_id("33060219900230123"), "resident_id", False),  # checks, but 1990-02-30 is no date
        (make_id("33060221000101123"), "resident_id", False),  # born in the future
        ("E12345678", "passport", None),
        ("EA1234567", "passport", None),
        ("G12345678", "passport", None),
        ("H12345678", "hk_macau_permit", None),  # 回乡证
        ("M1234567890", "hk_macau_permit", None),
        ("12345678", "taiwan_permit", None),  # 台胞证
        (make_id("81000019900102123"), "hk_macau_permit", True),  # 港澳居民居住证
        (make_id("82000019900102123"), "hk_macau_permit", True),
        (make_id("83000019900102123"), "taiwan_permit", True),  # 台湾居民居住证
        ("12345", "other", False),
        ("3306021990010212", "other", False),  # 16 digits
    ],
)
def test_type_and_validity(raw, id_type, valid):
    row = std(raw)
    assert row["id_type"] == id_type
    assert row["id_valid"] is valid


def test_invalid_number_is_kept_normalized_not_dropped():
    wrong = MALE_1990[:17] + ("0" if MALE_1990[17] != "0" else "1")
    row = std(" " + wrong.lower() + " ")
    assert row["id_number"] == wrong
    assert row["id_valid"] is False
    assert row["id_birth_date"] is None and row["id_sex"] is None and row["id_region"] is None


@pytest.mark.parametrize(
    ("raw", "birth", "sex", "region"),
    [
        (MALE_1990, date(1990, 1, 2), "M", "330602"),
        (FEMALE_1985, date(1985, 7, 4), "F", "110105"),
        (make_id("81000019900102123"), date(1990, 1, 2), "M", None),  # a permit's 810000 is no mainland region
    ],
)
def test_derived_birth_sex_region(raw, birth, sex, region):
    row = std(raw)
    assert (row["id_birth_date"], row["id_sex"], row["id_region"]) == (birth, sex, region)


def test_whole_column_keeps_order_and_height():
    raw = [MALE_1990, None, "E12345678", FEMALE_1985]
    out = standardize_id_numbers(pl.DataFrame({"id_number": raw}), as_of=AS_OF)
    assert out.height == 4
    assert out.get_column("id_number").to_list() == raw
    assert out.get_column("id_type").to_list() == ["resident_id", None, "passport", "resident_id"]


def _sql_forms(values: list[str | None]) -> list[tuple]:
    import duckdb

    from linkage.id_numbers import MASKED_ID_NUMBER_SQL, define_identity_number_macro

    con = duckdb.connect()
    define_identity_number_macro(con)
    masked = MASKED_ID_NUMBER_SQL.format(value="v")
    return con.execute(
        f"select v, identity_number_form(v), is_identity_number(v), {masked} from unnest($values::varchar[]) t(v)",
        {"values": values},
    ).fetchall()


def test_the_sql_identity_number_test_agrees_with_the_check_character() -> None:
    import random

    from linkage.households import mask_id_number

    rng = random.Random(7)
    values = []
    for _ in range(3000):
        first17 = f"{rng.randint(110000, 659999)}{rng.randint(1890, 2030)}{rng.randint(1, 13):02d}{rng.randint(1, 32):02d}"
        first17 += f"{rng.randint(0, 999):03d}"
        values.append(first17 + rng.choice([check_character(first17), rng.choice("0123456789X")]))
    # 15-digit ids (no check character): a real yymmdd, or not
    values += [f"{rng.randint(110000, 659999)}{rng.randint(0, 99):02d}{rng.randint(1, 13):02d}{rng.randint(1, 32):02d}"
               f"{rng.randint(0, 999):03d}" for _ in range(1000)]

    def birth(text: str) -> date | None:
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        except ValueError:
            return None

    def expected(value: str) -> str | None:
        if len(value) == 15:
            return "id15" if birth("19" + value[6:12]) else None
        born = birth(value[6:14])
        if born is None or not EARLIEST_BIRTH <= born <= date.today():
            return None
        return "id18" if check_character(value[:17]) == value[17] else "id18_wrong_check"

    rows = _sql_forms(values)
    assert [r[1] for r in rows] == [expected(v) for v in values]
    assert [r[2] for r in rows] == [expected(v) == "id18" for v in values]
    assert sum(r[1] == "id18" for r in rows) > 500
    assert sum(r[1] == "id18_wrong_check" for r in rows) > 500
    assert sum(r[1] == "id15" for r in rows) > 500
    # The quarantine's mask is mask_id_number's, for 18 and for 15 characters.
    assert all(r[3] == mask_id_number(r[0]) for r in rows)


@pytest.mark.parametrize(
    ("value", "form"),
    [
        (f" {MALE_1990} ", None),  # taken as it is: the readers trim every cell
        (MALE_1990[:17] + "x" if MALE_1990[17] == "X" else MALE_1990[:17] + "X", "id18_wrong_check"),
        ("11010519491231002x", "id18"),  # a lower-case x checks too
        ("33060220231201000" + check_character("33060220231201000"), "id18"),  # a record number that checks by chance
        ("330602900102123", "id15"),
        ("330602901302123", None),  # month 13
        ("33060221000101123" + check_character("33060221000101123"), None),  # born in 2100
        ("33060218991231123" + check_character("33060218991231123"), None),  # born before 1900
        ("03060219900102123" + check_character("03060219900102123"), None),  # no region starts with 0
        ("3306021990010212", None),  # 16 digits
        ("3306021990010212345", None),  # 19 digits
        ("GA0001", None),
        ("", None),
        (None, None),
    ],
)
def test_identity_number_form(value: str | None, form: str | None) -> None:
    assert _sql_forms([value])[0][1:3] == (form, form == "id18")
