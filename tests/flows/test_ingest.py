"""Ingest: every format and encoding, every quarantine reason, and the accounting
rule that each input row ends in exactly one of raw_records or quarantine."""

import datetime as dt
import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from openpyxl import Workbook

from flows.config import ConfigError, load_sources
from flows.ingest import ingest_sources
from flows.preflight import preflight

HEADER = ["记录编号", "姓名", "公民身份号码", "出生日期", "更新时间"]
ROWS = [
    ["r1", "张伟", "330602199001021237", "1990-01-02", "2026-01-01"],
    ["r2", "歐陽娜娜", "", "1990/1/2", ""],
    ["r3", "阿依古丽·买买提", "650102198503040021", "19850304", ""],
]


def sources_yaml(tmp_path: Path, entries: list[dict]) -> Path:
    import yaml

    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump({"sources": entries}, allow_unicode=True), encoding="utf-8")
    return path


def entry(name: str, path: str, fmt: str, encoding: str | None = None, **columns: str) -> dict:
    mapping = {"record_id": "记录编号", "name": "姓名", "id_number": "公民身份号码", "birth_date": "出生日期",
               "updated_at": "更新时间"}
    mapping.update(columns)
    item = {"name": name, "department": "测试科", "kind": "generic", "path": path, "format": fmt, "columns": mapping}
    if encoding:
        item["encoding"] = encoding
    return item


def write_csv(path: Path, rows: list[list[str]], encoding: str, bom: bool = False) -> None:
    text = "\n".join(",".join(r) for r in [HEADER, *rows]) + "\n"
    data = text.encode(encoding)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)


def ingest(tmp_path: Path, entries: list[dict]) -> tuple[duckdb.DuckDBPyConnection, object]:
    config = load_sources(sources_yaml(tmp_path, entries))
    con = duckdb.connect()
    return con, ingest_sources(con, config, "test-run")


def raw(con) -> pl.DataFrame:
    return con.execute("select * from raw_records order by record_key").pl()


def quarantine(con) -> pl.DataFrame:
    return con.execute("select * from quarantine order by source, file, row_number").pl()


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [("utf-8", False), ("utf-8", True), ("gb18030", False), ("gbk", False)],
)
def test_csv_encodings_read_chinese_text(tmp_path: Path, encoding: str, bom: bool) -> None:
    write_csv(tmp_path / "a.csv", ROWS, encoding if encoding != "utf-8" else "utf-8", bom)
    con, result = ingest(tmp_path, [entry("a", "a.csv", "csv", encoding)])
    frame = raw(con)
    assert frame["name"].to_list() == ["张伟", "歐陽娜娜", "阿依古丽·买买提"]
    assert frame["id_number"].to_list() == ["330602199001021237", None, "650102198503040021"]
    assert frame["row_number"].to_list() == [1, 2, 3]
    assert result.rows_in == 3 and result.quarantined == 0
    assert frame["file_sha256"].n_unique() == 1 and len(frame["file_sha256"][0]) == 64
    assert frame["load_batch"].unique().to_list() == ["test-run"]


def test_xlsx_date_cells_and_text_cells_in_one_column(tmp_path: Path) -> None:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append(["r1", "张伟", "330602199001021237", dt.datetime(1990, 1, 2), dt.datetime(2026, 3, 4, 8, 30)])
    sheet.append(["r2", "李娜", 330602199001021237, "1990年1月2日", None])
    sheet.append([3, "王芳", None, 19900102, None])
    sheet.append([None, None, None, None, None])  # an empty row is not a data row
    workbook.save(tmp_path / "b.xlsx")
    con, result = ingest(tmp_path, [entry("b", "b.xlsx", "xlsx")])
    frame = raw(con)
    assert frame["birth_date"].to_list() == ["1990-01-02", "1990年1月2日", "19900102"]
    assert frame["updated_at"].to_list() == ["2026-03-04 08:30:00", None, None]
    # An id typed as a number cell: Excel itself kept 15 significant digits. The lost ones
    # are shown as # (no float noise, no exponent, no zeros that could pass the check digit).
    assert frame["id_number"].to_list() == ["330602199001021237", "330602199001021###", None]
    assert frame["record_id"].to_list() == ["r1", "r2", "3"]
    assert result.rows_in == 3


def test_parquet_and_jsonl_with_list_mapping(tmp_path: Path) -> None:
    pl.DataFrame(
        {"id": ["p1", "p2"], "xing": ["欧阳", "ZHANG"], "ming": ["娜娜", None], "sfz": ["1", "2"],
         "born": [dt.date(1990, 1, 2), None]}
    ).write_parquet(tmp_path / "c.parquet")
    lines = [
        json.dumps({"id": "j1", "xing": "张", "ming": "伟", "sfz": None, "born": "1990-01-02"}, ensure_ascii=False),
        "{broken",
        "[1, 2]",
        json.dumps({"id": "j2", "xing": "李", "ming": "娜", "sfz": 330602199001021237, "born": None}, ensure_ascii=False),
    ]
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    columns = {"record_id": "id", "name": ["xing", "ming"], "id_number": "sfz", "birth_date": "born"}
    entries = []
    for name, path, fmt in [("c", "c.parquet", "parquet"), ("d", "d.jsonl", "jsonl")]:
        entries.append({"name": name, "department": "测试科", "path": path, "format": fmt, "columns": columns})
    con, result = ingest(tmp_path, entries)
    frame = raw(con)
    assert frame["name"].to_list() == ["欧阳 娜娜", "ZHANG", "张 伟", "李 娜"]
    assert frame["birth_date"].to_list() == ["1990-01-02", None, "1990-01-02", None]
    assert frame["id_number"].to_list() == ["1", "2", None, "330602199001021237"]
    bad = quarantine(con)
    assert bad["reason_code"].to_list() == ["unreadable_row", "unreadable_row"]
    assert bad["row_number"].to_list() == [2, 3]
    assert result.rows_in == 6 and result.accepted == 4


def test_glob_takes_every_file_in_order(tmp_path: Path) -> None:
    (tmp_path / "ex").mkdir()
    write_csv(tmp_path / "ex" / "part2.csv", ROWS[1:], "utf-8")
    write_csv(tmp_path / "ex" / "part1.csv", ROWS[:1], "utf-8")
    con, _ = ingest(tmp_path, [entry("g", "ex/part*.csv", "csv")])
    frame = raw(con)
    assert frame.select("file", "row_number").rows() == [("ex/part1.csv", 1), ("ex/part2.csv", 1), ("ex/part2.csv", 2)]


def test_every_quarantine_reason_and_accounting(tmp_path: Path) -> None:
    good = ROWS[0]
    lines = [
        ",".join(HEADER).encode("gb18030"),
        ",".join(good).encode("gb18030"),  # 1 accepted (then superseded by row 7)
        "r2,李四,,1990/1/2".encode("gb18030"),  # 2 wrong_column_count (4 fields)
        "r3,不详,,1990/1/2,".encode("gb18030"),  # 3 no_name_or_id (placeholder name, no id)
        ",赵六,330602199001021237,,".encode("gb18030"),  # 4 missing_record_id
        b"r5,\x81\x20\xff,,,",  # 5 undecodable_bytes
        "r6,王五,,1990-01-02,2020-01-01".encode("gb18030"),  # 6 accepted
        "r1,张伟,330602199001021237,1990-01-02,2026-06-01".encode("gb18030"),  # 7 fresher r1: kept
        "r6,王五,,1990-01-02,2019-01-01 23:59".encode("gb18030"),  # 8 older r6: superseded
        b"",
    ]
    (tmp_path / "q.csv").write_bytes(b"\n".join(lines))
    con, result = ingest(tmp_path, [entry("q", "q.csv", "csv", "gb18030")])
    accepted = raw(con)
    assert accepted.select("record_id", "row_number").rows() == [("r6", 6), ("r1", 7)]
    bad = quarantine(con)
    assert bad.select("row_number", "reason_code").rows() == [
        (1, "superseded_duplicate_record_id"),
        (2, "wrong_column_count"),
        (3, "no_name_or_id"),
        (4, "missing_record_id"),
        (5, "undecodable_bytes"),
        (8, "superseded_duplicate_record_id"),
    ]
    # The header is line 1: data row N is line N + 1, as the reasons and file_row say.
    assert bad["file_row"].to_list() == [2, 3, 4, 5, 6, 9]
    reasons = dict(zip(bad["row_number"], bad["reason"], strict=True))
    assert reasons[1] == (
        "文件第2行(数据第1行)：记录编号 r1 在本来源中重复，已被 q.csv 文件第8行(数据第7行，更新时间 2026-06-01)取代 "
        "(line 2, data row 1: superseded by the fresher row with the same record id at line 8, data row 7 of q.csv)"
    )
    assert reasons[8].startswith("文件第9行(数据第8行)：记录编号 r6 在本来源中重复，已被 q.csv 文件第7行(数据第6行，")
    assert reasons[2].startswith("文件第3行(数据第2行)有4列，表头有5列")
    assert reasons[3].startswith("文件第4行(数据第3行)：姓名和身份证号都为空")
    assert reasons[4] == "文件第5行(数据第4行)：缺少记录编号，无法追溯到原始记录 (line 5, data row 4: the record id is empty)"
    assert reasons[5].startswith("文件第6行(数据第5行)含有无法按 gb18030 解码的字节")
    assert bad.filter(pl.col("row_number") == 2)["record_id"].to_list() == ["r2"]
    # Accounting: every input row is in exactly one of the two tables.
    assert result.rows_in == 8 == accepted.height + bad.height
    counts = con.execute("select rows_in, accepted, quarantined from run_source_counts").fetchall()
    assert counts == [(8, 2, 6)]


def test_a_record_id_that_is_an_identity_number_is_quarantined_and_published_masked(tmp_path: Path) -> None:
    # Every published file names a row by its record id: before, a department whose record
    # numbers were identity numbers had them published in full in entity_map.parquet,
    # household_findings.parquet and quarantine.parquet.
    lines = [
        ",".join(HEADER),
        "330602199001021237,张伟,330602199001021237,1990-01-02,",  # 1 an id as the record id
        "r2,李娜,,1990-01-02,",  # 2 accepted
        "33060200504522274,王芳,,1990-01-02,",  # 3 a 17-digit record number: accepted
        # 4 18 digits, wrong check character: in a source whose record ids are identity
        # numbers (1 of the 2 of that form passes the check), an id with a typo, quarantined
        "330602199001021230,赵六,,1990-01-02,",
        "650102198503040027,阿依古丽,,1985-03-04",  # 5 4 fields, and the record id is an id
    ]
    (tmp_path / "ids.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    con, result = ingest(tmp_path, [entry("ids", "ids.csv", "csv")])
    assert raw(con)["record_id"].to_list() == ["r2", "33060200504522274"]
    bad = quarantine(con)
    assert bad.select("row_number", "record_id", "reason_code").rows() == [
        (1, "330602********1237", "record_id_is_id_number"),
        (4, "330602********1230", "record_id_is_id_number"),
        (5, "650102********0027", "wrong_column_count"),
    ]
    assert "记录编号是身份证号码" in bad["reason"][0] and "330602199001021237" not in bad["reason"][0]
    assert "记录编号具有身份证号码的格式" in bad["reason"][1]
    assert result.rows_in == 5 == result.accepted + result.quarantined


def make_id(first17: str) -> str:
    from linkage.id_numbers import check_character

    return first17 + check_character(first17)


def wrong_check(identity_number: str) -> str:
    """The same number with another check character: an id with a typo."""
    return identity_number[:17] + ("0" if identity_number[17] != "0" else "1")


def write_named(path: Path, record_ids: list[str], id_numbers: list[str] | None = None) -> None:
    """One row per record id, with a name and (when given) an id number."""
    id_numbers = id_numbers or [""] * len(record_ids)
    lines = [",".join(HEADER)] + [
        f"{rid},张{i}伟,{idn},1990-01-02," for i, (rid, idn) in enumerate(zip(record_ids, id_numbers, strict=True))
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_record_numbers_of_region_date_and_sequence_are_kept_though_some_pass_the_check(tmp_path: Path) -> None:
    # Many government systems number their records region code + date + sequence (330602
    # 20231201 0001): 18 digits around a real "birth date", and about 1 in 11 passes the check
    # character by chance. Before, each such row was quarantined as record_id_is_id_number
    # every night: ~9% of the department's rows lost. They are the department's own numbers.
    from linkage.id_numbers import check_character

    record_ids = [f"330602202312{day:02d}{seq:04d}" for day in (1, 2, 3) for seq in range(1, 21)]
    passing = [r for r in record_ids if check_character(r[:17]) == r[17]]
    assert 2 <= len(passing) < len(record_ids) / 2  # several pass by chance (6 of 60 here)
    write_named(tmp_path / "numbers.csv", record_ids)
    con, result = ingest(tmp_path, [entry("numbers", "numbers.csv", "csv")])
    assert raw(con)["record_id"].to_list() == record_ids
    assert quarantine(con).height == 0 and result.quarantined == 0


def test_a_source_of_identity_numbers_loses_its_typos_and_15_digit_ids_too(tmp_path: Path) -> None:
    # A source whose record ids are identity numbers: one that checks, one with a typo in its
    # check character, one old 15-digit id (no check character). Before, only the first was
    # recognized; the other two were published in full in entity_map.parquet (and in every
    # household finding naming them). None of the three is the row's own id number here (the
    # id number cells are empty): the source's column decides.
    valid = make_id("33060219900102123")
    typo = wrong_check(make_id("11010519850704002"))
    old = "650102850304002"  # 650102 1985-03-04 002
    write_named(tmp_path / "ids.csv", [valid, "r2", typo, old])
    con, result = ingest(tmp_path, [entry("ids", "ids.csv", "csv")])
    assert raw(con)["record_id"].to_list() == ["r2"]
    bad = quarantine(con)
    assert bad.select("row_number", "record_id", "reason_code").rows() == [
        (1, valid[:6] + "********" + valid[-4:], "record_id_is_id_number"),
        (3, typo[:6] + "********" + typo[-4:], "record_id_is_id_number"),
        (4, "650102********4002", "record_id_is_id_number"),
    ]
    assert "记录编号是身份证号码" in bad["reason"][0]
    assert all("记录编号具有身份证号码的格式" in reason for reason in bad["reason"][1:])
    assert not any(number in reason for reason in bad["reason"] for number in (valid, typo, old))
    assert result.rows_in == 4 == result.accepted + result.quarantined


@pytest.mark.parametrize(
    ("passing", "failing", "quarantined"),
    [
        (1, 0, True),  # one such record id, and it checks: an identity number
        (1, 1, True),  # half: a typo beside an id
        (2, 2, True),
        (0, 3, False),  # nothing checks: not identity numbers (a lone typo'd id is not told apart)
        (1, 2, False),  # under half: record numbers, one passing by chance
        (3, 27, False),
    ],
)
def test_a_source_is_judged_by_the_share_of_its_record_ids_that_pass_the_check(
    tmp_path: Path, passing: int, failing: int, quarantined: bool
) -> None:
    numbers = [f"3306022023120{i // 1000 + 1}{i % 1000:04d}" for i in range(3000)]
    checked = [n for n in numbers if make_id(n[:17]) == n][:passing]
    unchecked = [n for n in numbers if make_id(n[:17]) != n][:failing]
    record_ids = [*checked, *unchecked, "r1", "330602900102123"]  # a 15-digit one goes with the rest
    write_named(tmp_path / "s.csv", record_ids)
    con, _ = ingest(tmp_path, [entry("s", "s.csv", "csv")])
    kept = raw(con)["record_id"].to_list()
    expected = ["r1"] if quarantined else record_ids
    assert kept == expected
    assert set(quarantine(con)["reason_code"]) == ({"record_id_is_id_number"} if quarantined else set())


def test_a_record_id_that_is_the_rows_own_id_number_goes_whatever_the_source(tmp_path: Path) -> None:
    # A source of record numbers where one row was exported with the person's id number as
    # its record id (18-digit, or the 15-digit form of the row's 18-digit id): the source's
    # column says record numbers, the row itself says identity number.
    from linkage.id_numbers import upgrade_15_to_18

    numbers = [f"330602202312{day:02d}{seq:04d}" for day in (1, 2) for seq in range(1, 11)]
    own = make_id("33060219900102123")
    own_typo = wrong_check(make_id("33060219910203123"))
    old = "330602920304123"
    record_ids = [*numbers, own, own_typo, old]
    write_named(tmp_path / "m.csv", record_ids, [""] * len(numbers) + [own, own_typo, upgrade_15_to_18(old)])
    con, _ = ingest(tmp_path, [entry("m", "m.csv", "csv")])
    assert raw(con)["record_id"].to_list() == numbers
    bad = quarantine(con)
    assert bad["record_id"].to_list() == [own[:6] + "********" + own[-4:], own_typo[:6] + "********" + own_typo[-4:],
                                          "330602********4123"]
    assert all("记录编号是身份证号码" in reason for reason in bad["reason"])


def test_a_record_id_that_is_the_rows_own_id_number_with_a_typo_goes_whatever_the_source(tmp_path: Path) -> None:
    # A department moving to its own record numbers (region + date + sequence) that left a
    # row's record id as the person's id number typed with one character wrong, the id number
    # column right: the source is no longer judged one of identity numbers (3 of its 21 ids of
    # the form pass), and before, 330603200002166491 (the id 330603200002166499 with a typo'd
    # check character) and one with a typo in a middle digit were published in full in
    # entity_map.parquet; the night before, the same rows had gone to quarantine masked.
    numbers = [f"330603202512{day:02d}{seq:04d}" for day in (1, 2) for seq in range(1, 11)]
    own = make_id("33060320000216649")
    middle = make_id("11010519850704002")
    middle_typo = middle[:15] + ("1" if middle[15] != "1" else "2") + middle[16:]  # its sequence number
    # A typo in the month (19851704) takes the number out of an identity number's form.
    month_typo = middle[:10] + "1" + middle[11:]
    record_ids = [*numbers, wrong_check(own), middle_typo, month_typo]
    write_named(tmp_path / "m.csv", record_ids, [""] * len(numbers) + [own, middle, middle])
    con, _ = ingest(tmp_path, [entry("m", "m.csv", "csv")])
    assert raw(con)["record_id"].to_list() == numbers
    bad = quarantine(con)
    assert bad.select("row_number", "record_id", "reason_code").rows() == [
        (21, own[:6] + "********" + wrong_check(own)[-4:], "record_id_is_id_number"),
        (22, middle_typo[:6] + "********" + middle_typo[-4:], "record_id_is_id_number"),
        (23, month_typo[:6] + "********" + month_typo[-4:], "record_id_is_id_number"),
    ]


def test_a_row_the_reader_rejects_in_a_source_of_identity_numbers_has_its_record_id_masked(tmp_path: Path) -> None:
    valid = make_id("33060219900102123")
    typo = wrong_check(make_id("11010519850704002"))
    lines = [",".join(HEADER), f"{valid},张伟,,1990-01-02,", f"{typo},李娜,,1990-01-02", "650102850304002,王芳,"]
    (tmp_path / "ids.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    con, _ = ingest(tmp_path, [entry("ids", "ids.csv", "csv")])
    bad = quarantine(con)
    assert bad.select("record_id", "reason_code").rows() == [
        (valid[:6] + "********" + valid[-4:], "record_id_is_id_number"),
        (typo[:6] + "********" + typo[-4:], "wrong_column_count"),
        ("650102********4002", "wrong_column_count"),
    ]


def test_a_rejected_row_of_a_composite_record_id_names_every_part(tmp_path: Path) -> None:
    # record_id: [区号, 序号]: an accepted row's id is "GA 0001"; a row rejected for bad bytes
    # was named by its first part alone ("GA"), which names no record.
    lines = [
        "区号,序号,姓名".encode("gb18030"),
        "GA,0001,张伟".encode("gb18030"),
        b"GA,0002,\x81\x20\xff",
    ]
    (tmp_path / "c.csv").write_bytes(b"\n".join(lines) + b"\n")
    item = entry("c", "c.csv", "csv", "gb18030")
    item["columns"] = {"record_id": ["区号", "序号"], "name": "姓名"}
    con, _ = ingest(tmp_path, [item])
    assert raw(con)["record_id"].to_list() == ["GA 0001"]
    assert quarantine(con).select("record_id", "reason_code").rows() == [("GA 0002", "undecodable_bytes")]


def test_record_id_mapped_to_the_identity_number_column_is_refused(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", ROWS, "utf-8")
    with pytest.raises(ConfigError, match="record_id is mapped to '公民身份号码', the id_number column"):
        load_sources(sources_yaml(tmp_path, [entry("a", "a.csv", "csv", record_id="公民身份号码")]))


def test_missing_mapped_column_is_fatal_in_preflight_and_ingest(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", ROWS, "utf-8")
    path = sources_yaml(tmp_path, [entry("a", "a.csv", "csv", phone="联系电话")])
    with pytest.raises(ConfigError, match=r"a\.csv: column '联系电话' \(mapped for source 'a'\) is not in the extract"):
        preflight(path)
    con = duckdb.connect()
    with pytest.raises(ConfigError, match="联系电话"):
        ingest_sources(con, load_sources(path), "r")
    # nothing was written
    assert con.execute("select count(*) from information_schema.tables").fetchone()[0] == 0


def test_jsonl_key_never_present_is_fatal(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"id": "1", "xm": "张伟"}\n', encoding="utf-8")
    path = sources_yaml(
        tmp_path, [{"name": "d", "department": "x", "path": "d.jsonl", "columns": {"record_id": "id", "name": "姓名"}}]
    )
    with pytest.raises(ConfigError, match="column '姓名'"):
        preflight(path)


def test_rerun_replaces_rather_than_doubles(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", ROWS, "utf-8")
    config = load_sources(sources_yaml(tmp_path, [entry("a", "a.csv", "csv")]))
    con = duckdb.connect()
    ingest_sources(con, config, "night-1")
    ingest_sources(con, config, "night-2")
    assert con.execute("select count(*) from raw_records").fetchone()[0] == 3
    assert con.execute("select count(*), count(distinct run_id) from run_source_counts").fetchone() == (2, 2)


def test_a_file_with_no_readable_rows_between_others(tmp_path: Path) -> None:
    (tmp_path / "ex").mkdir()
    write_csv(tmp_path / "ex" / "p1.csv", [], "utf-8")
    write_csv(tmp_path / "ex" / "p2.csv", [["r9", "李四"]], "utf-8")  # wrong width only
    write_csv(tmp_path / "ex" / "p3.csv", ROWS[:2], "utf-8")
    con, result = ingest(tmp_path, [entry("g", "ex/p*.csv", "csv")])
    assert raw(con)["record_id"].to_list() == ["r1", "r2"]
    assert quarantine(con)["reason_code"].to_list() == ["wrong_column_count"]
    assert result.rows_in == 3
    # the staging table is gone; only the night's tables remain
    tables = {row[0] for row in con.execute("select table_name from information_schema.tables").fetchall()}
    assert "ingest_rows" not in tables and "stg_ingest_rows_rejected" not in tables


def test_bad_second_file_leaves_no_staging_table(tmp_path: Path) -> None:
    write_csv(tmp_path / "a.csv", ROWS, "utf-8")
    (tmp_path / "b.csv").write_text("编号\n1\n", encoding="utf-8")
    config = load_sources(sources_yaml(tmp_path, [entry("a", "a.csv", "csv"), entry("b", "b.csv", "csv")]))
    con = duckdb.connect()
    with pytest.raises(ConfigError, match="b.csv"):
        ingest_sources(con, config, "r")
    assert con.execute("select count(*) from information_schema.tables").fetchone()[0] == 0


def test_extracts_read_ahead_are_taken_once_and_their_reading_time_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.ingest as ingest_module
    from flows.ingest import prefetch_extracts
    from flows.stages import StageResult

    write_csv(tmp_path / "a.csv", ROWS, "gb18030")
    write_csv(tmp_path / "b.csv", ROWS[:2], "utf-8")
    config = load_sources(
        sources_yaml(tmp_path, [entry("a", "a.csv", "csv", "gb18030"), entry("b", "b.csv", "csv")])
    )
    reads: list[str] = []
    read_extract = ingest_module.read_extract

    def counted(source, file):
        reads.append(file.name)
        return read_extract(source, file)

    monkeypatch.setattr(ingest_module, "read_extract", counted)
    monkeypatch.setattr(ingest_module, "_prefetched", {})
    # A budget of 3 rows: a.csv (3 rows) is read ahead, b.csv is left to the ingest itself.
    assert prefetch_extracts(config, row_budget=3) == 3
    assert reads == ["a.csv"]
    ahead = ingest_module._prefetched[ingest_module._file_key(config.sources[0], tmp_path / "a.csv")][1]
    assert ahead > 0
    result = ingest_sources(duckdb.connect(), config, "test-run")
    # a.csv is not read twice; its reading time is the stage's, reported apart from its own seconds.
    assert reads == ["a.csv", "b.csv"]
    assert result.read_ahead_seconds == ahead and result.accepted == 5
    entry_ = StageResult("ingest", 0.5, 5, 5, {"read_ahead_seconds": ahead}).ledger_entry()
    assert entry_["read_ahead_seconds"] == round(ahead, 3) and entry_["seconds"] == 0.5
    # Without a read-ahead there is nothing to report.
    assert ingest_sources(duckdb.connect(), config, "test-run").read_ahead_seconds == 0.0
    assert "read_ahead_seconds" not in StageResult("ingest", 0.5, 5, 5, {"read_ahead_seconds": 0.0}).ledger_entry()


def test_an_extract_changed_after_its_read_ahead_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import flows.ingest as ingest_module
    from flows.ingest import prefetch_extracts

    write_csv(tmp_path / "a.csv", ROWS, "utf-8")
    config = load_sources(sources_yaml(tmp_path, [entry("a", "a.csv", "csv")]))
    monkeypatch.setattr(ingest_module, "_prefetched", {})
    prefetch_extracts(config)
    write_csv(tmp_path / "a.csv", ROWS[:1], "utf-8")
    stat = (tmp_path / "a.csv").stat()
    os.utime(tmp_path / "a.csv", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    result = ingest_sources(duckdb.connect(), config, "test-run")
    assert result.accepted == 1 and result.read_ahead_seconds == 0.0


def test_a_file_inserted_in_many_batches_gives_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flows.ingest as ingest_module

    rows = [[f"r{i}", f"张{i}", "", "1990-01-02", ""] for i in range(7)] + [["r3", "张3", "", "1990-01-03", ""]]
    write_csv(tmp_path / "a.csv", rows, "utf-8")
    entries = [entry("a", "a.csv", "csv")]
    con_whole, _ = ingest(tmp_path, entries)
    # One row per Arrow batch: DuckDB's threads insert them in any order; the keys and the
    # duplicate rule (r3 twice) must not notice.
    monkeypatch.setattr(ingest_module, "ROW_GROUP_ROWS", 1)
    con_batches, result = ingest(tmp_path, entries)
    assert raw(con_batches).equals(raw(con_whole))
    assert quarantine(con_batches).equals(quarantine(con_whole))
    assert result.accepted == 7 and result.quarantined == 1


@pytest.mark.parametrize(
    ("name", "id_number"),
    [("无名", ""), ("XXX", "未知"), ("UNKNOWN", ""), ("待查", ""), ("姓名", ""), ("某", ""), ("无", "NULL"),
     ("123", ""), ("张某某", "")],
)
def test_a_placeholder_name_standardization_drops_is_no_name(tmp_path: Path, name: str, id_number: str) -> None:
    # Standardization leaves these names (linkage.names.PLACEHOLDERS, no Han or Latin letter)
    # and ids empty: accepted, each row would be published as a person of its own.
    write_csv(tmp_path / "a.csv", [["p1", name, id_number, "1990-01-02", ""], ROWS[0]], "utf-8")
    con, result = ingest(tmp_path, [entry("a", "a.csv", "csv")])
    assert quarantine(con).select("record_id", "reason_code").rows() == [("p1", "no_name_or_id")]
    assert raw(con)["record_id"].to_list() == ["r1"]
    assert result.rows_in == 2


def test_every_sheet_of_a_split_workbook_ends_in_one_output_and_reasons_name_the_sheet(tmp_path: Path) -> None:
    # An export split over sheets (Excel's row limit), with a 说明 sheet between. Before, the
    # rows of Sheet2 were in neither raw_records nor quarantine.
    book = Workbook()
    first = book.active
    first.title = "Sheet1"
    for row in [HEADER, ROWS[0], ["r2", "李娜", "", "", "2020-01-01"]]:
        first.append(row)
    book.create_sheet("说明").append(["数据截至2026年11月"])
    second = book.create_sheet("Sheet2")
    for row in [HEADER, ["", "赵六", "", "", ""], ["r2", "李娜", "", "", "2026-05-01"], ["r9", "王五", "", "", ""]]:
        second.append(row)
    book.save(tmp_path / "w.xlsx")
    con, result = ingest(tmp_path, [entry("w", "w.xlsx", "xlsx")])
    assert raw(con).select("record_id", "row_number").rows() == [("r1", 1), ("r2", 4), ("r9", 5)]
    bad = quarantine(con)
    assert bad.select("row_number", "record_id", "reason_code").rows() == [
        (2, "r2", "superseded_duplicate_record_id"), (3, None, "missing_record_id"),
    ]
    superseded, missing = bad["reason"].to_list()
    # The row that replaced it is Excel row 3 of Sheet2 (its second data row, the workbook's
    # fourth), not "row 4" of a workbook whose sheets each start again at row 1.
    assert "已被 w.xlsx 工作表 Sheet2 第3行(数据第4行，更新时间 2026-05-01)取代" in superseded
    assert "at sheet Sheet2, Excel row 3, data row 4 of w.xlsx" in superseded
    assert superseded.startswith("工作表 Sheet1 第3行(数据第2行)：")
    assert missing == ("工作表 Sheet2 第2行(数据第3行)：缺少记录编号，无法追溯到原始记录 "
                       "(sheet Sheet2, Excel row 2, data row 3: the record id is empty)")
    assert bad["file_row"].to_list() == [3, 2]
    assert result.rows_in == 5 == raw(con).height + bad.height


def test_files_left_to_the_flow_are_checked_to_their_end_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_corrupt_parquet
) -> None:
    import flows.ingest as ingest_module
    from flows.ingest import check_extracts, prefetch_extracts

    monkeypatch.setattr(ingest_module, "_prefetched", {})
    monkeypatch.setattr(ingest_module, "_checked", set())
    write_csv(tmp_path / "a.csv", ROWS, "utf-8")
    # One undecodable row is the row's problem, not the file's: quarantined at ingest.
    (tmp_path / "b.csv").write_bytes(("\n".join(",".join(r) for r in [HEADER, *ROWS]) + "\n").encode("gb18030")
                                     + b"r4,\xff\xfe,,,\n")
    write_corrupt_parquet(tmp_path / "c.parquet")
    good = [entry("a", "a.csv", "csv"), entry("b", "b.csv", "csv", "gb18030")]
    config = load_sources(sources_yaml(tmp_path, good))
    assert prefetch_extracts(config, row_budget=0) == 0
    assert check_extracts(config) == 2
    assert check_extracts(config) == 0  # each file once
    result = ingest_sources(duckdb.connect(), config, "r")
    assert result.quarantined == 1 and ingest_module._checked == set()

    parquet = {"name": "c", "department": "x", "path": "c.parquet", "format": "parquet",
               "columns": {"record_id": "grbh", "name": "xm"}}
    (tmp_path / "d.csv").write_bytes(("xsbh,xm\n" + "".join(f"x{i},张伟\n" for i in range(5))).encode("gbk"))
    wrong_encoding = {"name": "d", "department": "x", "path": "d.csv", "columns": {"record_id": "xsbh", "name": "xm"}}
    book = Workbook()
    book.active.append(HEADER)
    book.create_sheet("Sheet2").append(["r9", "王五", "", "1990-01-02", ""])
    book.save(tmp_path / "e.xlsx")
    for bad, expected in [(parquet, r"c\.parquet: not a readable Parquet file"),
                          (wrong_encoding, r"d\.csv: 5 of its 5 lines"),
                          (entry("e", "e.xlsx", "xlsx"), r"e\.xlsx: sheet 'Sheet2' holds data")]:
        config = load_sources(sources_yaml(tmp_path, [*good, bad]))
        preflight(tmp_path / "sources.yaml")  # the headers are fine
        with pytest.raises(ConfigError, match=expected):
            check_extracts(config)


def test_a_header_quote_that_does_not_close_is_found_by_preflight(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text('记录编号,姓名,"公民身份号码\nr1,张伟,1\n', encoding="utf-8")
    path = sources_yaml(tmp_path, [{"name": "a", "department": "x", "path": "a.csv",
                                    "columns": {"record_id": "记录编号", "name": "姓名"}}])
    with pytest.raises(ConfigError, match=r"a\.csv: the header row cannot be read as CSV \(a quote in it does not close\)"):
        preflight(path)


@pytest.mark.parametrize("offset", ["+08:00", "+0800", "Z", " +08:00", ".250Z"])
def test_the_freshest_row_is_kept_when_updated_at_carries_a_utc_offset(tmp_path: Path, offset: str) -> None:
    # JSON APIs and Spark's Parquet (timestamps in UTC) write the offset. The freshness rule
    # did not parse such a time and fell back to row order: the 2022 row replaced the 2025 one
    # and the reason called it the fresher (found in review on the demo's civil-affairs roster).
    lines = [
        {"记录编号": "m1", "姓名": "李强伟", "更新时间": f"2025-08-30T15:12:30{offset}"},
        {"记录编号": "m2", "姓名": "王芳", "更新时间": f"2024-01-01T08:00:00{offset}"},
        {"记录编号": "m1", "姓名": "李强", "更新时间": f"2022-11-06T15:12:30{offset}"},
    ]
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n",
                                      encoding="utf-8")
    con, _ = ingest(tmp_path, [{"name": "r", "department": "民政局", "path": "r.jsonl", "format": "jsonl",
                                "columns": {"record_id": "记录编号", "name": "姓名", "updated_at": "更新时间"}}])
    assert raw(con).select("record_id", "name").rows() == [("m1", "李强伟"), ("m2", "王芳")]
    (row_number, file_row, reason), = quarantine(con).select("row_number", "file_row", "reason").rows()
    assert row_number == 3 and file_row == 3 and f"已被 r.jsonl 文件第1行(数据第1行，更新时间 2025-08-30T15:12:30{offset})取代" in reason


def test_a_fresher_row_a_rule_rejects_does_not_replace_the_usable_row_with_its_record_id(tmp_path: Path) -> None:
    # The fresher r1 has neither a name nor an id number: it is quarantined for that alone, and
    # the older r1 is the one kept, not marked superseded by a row that is not kept either.
    # Likewise r2's empty-named twin takes no part in r2's freshness ranking.
    write_csv(tmp_path / "q.csv", [
        ["r1", "张伟", "330602199001021237", "1990-01-02", "2025-01-01"],
        ["r2", "李娜", "", "1991-03-04", "2025-01-01"],
        ["r1", "不详", "", "", "2026-06-01"],
        ["r2", "无", "无", "", "2026-06-01"],
        ["r2", "李娜", "", "1991-03-04", "2024-01-01"],
    ], "utf-8")
    con, result = ingest(tmp_path, [entry("q", "q.csv", "csv")])
    assert raw(con).select("record_id", "row_number").rows() == [("r1", 1), ("r2", 2)]
    assert quarantine(con).select("row_number", "reason_code").rows() == [
        (3, "no_name_or_id"), (4, "no_name_or_id"), (5, "superseded_duplicate_record_id"),
    ]
    assert "已被 q.csv 文件第3行(数据第2行" in quarantine(con)["reason"][2]
    assert (result.accepted, result.quarantined) == (2, 3)


def test_a_workbook_that_opens_on_its_notes_is_read_and_its_reasons_name_the_data_sheet(tmp_path: Path) -> None:
    # 说明 first, the export on 名册: read (before, preflight stopped the night on 说明's
    # first line), and a reason names 名册, the sheet the clerk must turn to.
    book = Workbook()
    book.active.title = "说明"
    book.active.append(["本表由社区录入，每月更新"])
    data = book.create_sheet("名册")
    for values in [HEADER, ["r1", "张伟", "", "", ""], ["", "李娜", "", "", ""]]:
        data.append([value or None for value in values])
    book.save(tmp_path / "x.xlsx")
    config = preflight(sources_yaml(tmp_path, [entry("x", "x.xlsx", "xlsx")]))
    con = duckdb.connect()
    result = ingest_sources(con, config, "test-run")
    assert raw(con)["record_id"].to_list() == ["r1"]
    assert quarantine(con).select("row_number", "file_row", "reason").rows() == [
        (2, 3, "工作表 名册 第3行(数据第2行)：缺少记录编号，无法追溯到原始记录 (sheet 名册, Excel row 3, data row 2: the record id is empty)"),
    ]
    assert result.rows_in == 2


def test_a_superseded_workbook_row_names_both_rows_by_their_excel_rows(tmp_path: Path) -> None:
    # Excel row 3 is empty and the used range starts at column B: the data rows 1-4 are Excel
    # rows 2, 4, 5 and 6. Before, the reasons said 第1行 and 第3行 (data rows) and a clerk
    # looked one and two rows too high.
    book = Workbook()
    sheet = book.active
    rows = {1: HEADER, 2: ["r1", "张伟", "", "", "2020-01-01"], 4: ["r2", "李娜", "", "", ""],
            5: ["r1", "张伟", "", "", "2026-06-01"], 6: ["", "王芳", "", "", ""]}
    for row, values in rows.items():
        for column, value in enumerate(values, start=2):
            sheet.cell(row=row, column=column, value=value or None)
    book.save(tmp_path / "x.xlsx")
    con, result = ingest(tmp_path, [entry("x", "x.xlsx", "xlsx")])
    assert raw(con).select("record_id", "row_number").rows() == [("r2", 2), ("r1", 3)]
    bad = quarantine(con)
    assert bad.select("row_number", "file_row", "reason_code").rows() == [
        (1, 2, "superseded_duplicate_record_id"), (4, 6, "missing_record_id"),
    ]
    assert bad["reason"].to_list() == [
        "Excel 第2行(数据第1行)：记录编号 r1 在本来源中重复，已被 x.xlsx Excel 第5行(数据第3行，更新时间 2026-06-01)取代 "
        "(Excel row 2, data row 1: superseded by the fresher row with the same record id at Excel row 5, data row 3 "
        "of x.xlsx)",
        "Excel 第6行(数据第4行)：缺少记录编号，无法追溯到原始记录 (Excel row 6, data row 4: the record id is empty)",
    ]
    assert result.rows_in == 4


def test_a_csv_rule_reason_names_the_line_after_blank_lines_and_a_line_break_in_a_field(tmp_path: Path) -> None:
    # GB18030, blank lines before the header, a quoted address over two lines, a row of empty
    # fields: the row without a record id is data row 3 but line 9 of the file.
    lines = [
        b"",
        b"",
        ",".join(HEADER).encode("gb18030"),  # line 3
        'r1,张伟,,1990-01-02,"2026-01-01"'.encode("gb18030"),  # line 4: data row 1
        '"r2","李娜\n(曾用名 李那)",,,'.encode("gb18030"),  # lines 5-6: data row 2
        b",,,,",  # line 7
        b"",  # line 8
        ",王芳,,,".encode("gb18030"),  # line 9: data row 3, no record id
        "r4,刘洋,,".encode("gb18030"),  # line 10: data row 4, four fields
        "r5,陈静,,,".encode("gb18030"),  # line 11: data row 5
    ]
    (tmp_path / "g.csv").write_bytes(b"\n".join(lines) + b"\n")
    con, result = ingest(tmp_path, [entry("g", "g.csv", "csv", "gb18030")])
    assert raw(con).select("record_id", "row_number").rows() == [("r1", 1), ("r2", 2), ("r5", 5)]
    bad = quarantine(con)
    assert bad.select("row_number", "file_row", "reason").rows() == [
        (3, 9, "文件第9行(数据第3行)：缺少记录编号，无法追溯到原始记录 (line 9, data row 3: the record id is empty)"),
        (4, 10, "文件第10行(数据第4行)有4列，表头有5列，可能是字段中含逗号或换行 (line 10, data row 4: 4 fields, "
                "the header has 5)"),
    ]
    assert bad["file_row"].dtype == pl.Int32
    assert result.rows_in == 5


def test_row_place_macros_word_a_row_as_the_readers_do() -> None:
    # The readers word a place in Python (readers.row_place), the row rules in SQL: the same.
    from flows.ingest import define_row_place_macros
    from flows.readers import row_place

    con = duckdb.connect()
    define_row_place_macros(con)
    cases = [(fmt, sheet, file_row, note) for fmt in ("csv", "jsonl", "xlsx", "parquet") for sheet in (None, "Sheet2")
             for file_row in (None, 12) for note in (None, "更新时间 2026-01-01")]
    for fmt, sheet, file_row, note in cases:
        zh, en = con.execute("select row_place_zh($1, $2, $3, $4, $5), row_place_en($1, $2, $3, $4)",
                             [fmt, sheet, file_row, 11, note]).fetchone()
        assert (zh, en) == row_place(fmt, 11, file_row, sheet if fmt == "xlsx" else None, note), (fmt, sheet, file_row)


@pytest.mark.slow
@pytest.mark.prefect
def test_a_night_publishes_no_record_id_of_a_source_of_identity_numbers(prefect_harness, tmp_path: Path) -> None:
    # End to end: a household register whose record ids are identity numbers, 王芳 registered
    # in two households under her id with a typo in its check character and under her old
    # 15-digit id (一人多户: a finding naming both records); beside it a source of record
    # numbers (region + date + sequence), some passing the check by chance. Before, both of
    # 王芳's record ids were published in full in entity_map.parquet and household_findings.parquet,
    # and the record numbers that pass were quarantined.
    from flows.manifest import verify_run
    from flows.nightly import nightly
    from linkage.id_numbers import check_character

    first, second, wang = make_id("33060219800304123"), make_id("33060219820506124"), make_id("33060219900102126")
    wang_typo, wang_15 = wrong_check(wang), wang[:6] + wang[8:17]
    hukou = [
        "记录编号,姓名,公民身份号码,出生日期,户号,与户主关系,户籍地址",
        f"{first},张伟,{first},1980-03-04,H1,户主,浙江省绍兴市越城区城南街道一号",
        f"{second},李娜,{second},1982-05-06,H1,妻,浙江省绍兴市越城区城南街道一号",
        f"{wang_typo},王芳,{wang},1990-01-02,H1,女,浙江省绍兴市越城区城南街道一号",
        f"{wang_15},王芳,{wang},1990-01-02,H2,户主,浙江省绍兴市越城区府山街道二号",
    ]
    (tmp_path / "hukou.csv").write_text("\n".join(hukou) + "\n", encoding="utf-8")
    numbers = [f"330602202312{day:02d}{seq:04d}" for day in (1, 2) for seq in range(1, 21)]
    assert any(check_character(n[:17]) == n[17] for n in numbers)
    write_named(tmp_path / "records.csv", numbers)
    (tmp_path / "sources.yaml").write_text(
        "sources:\n"
        "  - name: hukou_ids\n    department: 公安局户政科\n    kind: hukou\n    path: hukou.csv\n"
        "    columns: {record_id: 记录编号, name: 姓名, id_number: 公民身份号码, birth_date: 出生日期,\n"
        "              household_id: 户号, relation_to_head: 与户主关系, hukou_address: 户籍地址}\n"
        "  - name: records\n    department: 民政局\n    path: records.csv\n"
        "    columns: {record_id: 记录编号, name: 姓名, birth_date: 出生日期}\n",
        encoding="utf-8",
    )
    run = Path(nightly(str(tmp_path / "sources.yaml"), str(tmp_path / "out")))
    entity_map = pl.read_parquet(run / "entity_map.parquet")
    findings = pl.read_parquet(run / "household_findings.parquet")
    quarantine = pl.read_parquet(run / "quarantine.parquet")
    ids = {first, second, wang_typo, wang_15}
    assert not ids & set(entity_map["record_id"]) and not ids & set(findings["record_id"])
    assert entity_map.filter(pl.col("source") == "records")["record_id"].sort().to_list() == sorted(numbers)
    assert sorted(quarantine.select("record_id", "reason_code").rows()) == sorted(
        (rid[:6] + "********" + rid[-4:], "record_id_is_id_number") for rid in ids
    )
    assert verify_run(run) == []
