"""Each department's mismatch report, as polars frames with Chinese headers (pure: no files).

Grain: one ``DepartmentReport`` per department of the sources; inside it one sheet per
kind of problem, one row per own record involved (duplicates: per record, grouped per
person; conflicts: per own record, field and disagreeing other source and value;
household findings: per evidence record; rows of the department's own extracts rejected at
ingest: per row, as ``quarantine`` holds it).

What a department sees: its own records' values in full (it holds them anyway); of any
other source only the source and department names, sexes, and names, identity numbers
and birth dates masked (张*, 330602********123X, ****-**-**). The birth date is masked
because a masked id hides exactly its birth-date digits: shown beside it, the other
department's date would give its whole id back. Where the values differ is told instead
(第13、18位不同, 日不同). Findings shown on
another department's record that concern this department (``related_department``)
appear without that record's id, with their detail, which never holds full personal
values, and with the department's own number of the household in question (户号).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date

import duckdb
import polars as pl

from linkage.fields import QUARANTINE_OWN_RECORD_ID, QUARANTINE_SHEET, RAW_VALUES_VIEW
from linkage.households import EXTRA_COLUMNS, FINDING_COLUMNS, FINDING_KINDS, KIND_LABELS
from linkage.sql import raw_values_join

SEX_LABELS = {"M": "男", "F": "女"}
FIELD_LABELS = {"name": "姓名", "id_number": "公民身份号码", "birth_date": "出生日期", "sex": "性别"}
COMPARED_FIELDS: tuple[str, ...] = ("name", "id_number", "birth_date", "sex")

KIND_ADVICE: dict[str, str] = {
    "duplicates": "同一人在本部门同一数据源中有多条记录：核实后保留一条，注销或合并其余记录",
    "conflicts": "本部门记录与其他部门关于同一人的记录不一致：核对原始材料，更正本部门错误或告知对方部门",
    "hukou_residence_split": "户籍地与实际居住地不在同一乡镇街道且超过半年：核实是否需办理居住登记或户口迁移",
    "multi_household": "同一人在户籍中登记于多个户：核实并注销重复户口",
    "roster_conflict": "本部门的户成员名单与户籍登记不一致：核实成员增减与户主",
    "unregistered_resident": "已知在此居住但无居住登记、亦非户籍地：上门核实并督促办理居住登记",
    "two_heads": "一户登记了多名户主：核实并更正与户主关系",
    "no_head": "户内无人登记为户主：核实并补登户主",
    "child_older_than_parent": "子女出生日期早于父母：核对出生日期或与户主关系",
    "spouse_under_legal_age": "配偶未达法定婚龄（男22岁、女20岁）：核对出生日期或与户主关系",
    "rejected": "本部门报送文件中未能入库的行（原因见各行）：按文件（分工作表的，按工作表）和文件中的行号找到原行，更正后随下次报送重报；"
    "被同一记录编号较新一行取代的，核实后删除或更正旧行",
}

# The sheet of the department's own rejected rows (the quarantine table's rows of its
# sources), after every other sheet so that their CSV names keep their numbers.
REJECTED_KEY = "rejected"
REJECTED_TITLE = "未入库记录"
# quarantine's columns the sheet shows, by name (the table may carry others), with their headers.
REJECTED_HEADERS = {
    "source": "数据源",
    "file": "文件",
    # The sheet of a workbook whose data runs over several sheets (empty otherwise): 文件中的行号
    # is that sheet's Excel row, and a clerk opening the workbook lands on the first sheet.
    "sheet": "工作表",
    # Where the clerk finds the row on opening the file (Excel's row, the text line), and the
    # contract's data row that quarantine.parquet names it by.
    "file_row": "文件中的行号",
    "row_number": "数据行号（不含表头）",
    "record_id": "记录编号",
    "reason": "原因",
}

RECORD_HEADERS = {
    "person_id": "人员编号",
    "source": "数据源",
    "record_id": "记录编号",
    "name": "姓名",
    "id_number": "公民身份号码",
    "sex": "性别",
    "birth_date": "出生日期",
    "household_id": "户号",
    "relation_to_head": "与户主关系",
    "hukou_address": "户籍地址",
    "residence_address": "居住地址",
    "registered_at": "登记日期",
    "updated_at": "更新日期",
}


# The standardized columns the reports read: a caller need load only these.
REPORT_COLUMNS: tuple[str, ...] = tuple(
    dict.fromkeys(
        (
            "source",
            "record_id",
            "department",
            "name",
            "name_script",
            *(f for f in RECORD_HEADERS if f != "person_id"),
            *(
                f"{f}_raw"
                for f in ("name", "id_number", "hukou_address", "residence_address", "relation_to_head")
            ),
        )
    )
)


@dataclass(frozen=True)
class ReportSheet:
    key: str  # ASCII, for the CSV file name: "duplicates"
    title: str  # the xlsx sheet name: "重复登记"
    frame: pl.DataFrame  # Chinese headers; String columns except counts


@dataclass(frozen=True)
class DepartmentReport:
    department: str
    sources: tuple[str, ...]
    sheets: tuple[ReportSheet, ...]

    def sheet(self, key: str) -> ReportSheet:
        for sheet in self.sheets:
            if sheet.key == key:
                return sheet
        raise KeyError(key)


def _column(frame: pl.DataFrame, name: str, dtype: pl.DataType = pl.String) -> pl.Expr:
    return pl.col(name) if name in frame.columns else pl.lit(None, dtype=dtype).alias(name)


def _own_values(std: pl.DataFrame) -> pl.DataFrame:
    """The department's own values as its clerk knows them: the raw cell where kept."""
    shown = []
    for field in RECORD_HEADERS:
        if field in ("person_id", "source", "record_id"):
            continue
        raw = f"{field}_raw"
        if (
            field in ("name", "id_number", "hukou_address", "residence_address", "relation_to_head")
            and raw in std.columns
        ):
            shown.append(pl.coalesce(pl.col(raw), _column(std, field).cast(pl.String)).alias(field))
        elif field == "sex":
            shown.append(
                _column(std, "sex").replace_strict(SEX_LABELS, default=_column(std, "sex")).alias("sex")
            )
        else:
            shown.append(_column(std, field).cast(pl.String).alias(field))
    return std.select("source", "record_id", *shown)


def _records(std: pl.DataFrame) -> pl.DataFrame:
    """What is compared across departments, of ``std`` already joined to its ``person_id``."""
    return std.select(
        "source",
        "record_id",
        _column(std, "department").fill_null(pl.col("source")).alias("department"),
        _column(std, "name"),
        _column(std, "name_script"),
        _column(std, "id_number"),
        _column(std, "birth_date", pl.Date).cast(pl.Date),
        _column(std, "sex"),
        _column(std, "updated_at", pl.Date).cast(pl.Date),
        "person_id",
    )


def _duplicates(own: pl.DataFrame, shown: pl.DataFrame) -> pl.DataFrame:
    dup = (
        own.filter(pl.col("person_id").is_not_null())
        .filter(pl.len().over("source", "person_id") >= 2)
        .select("source", "record_id", "person_id", records_in_group=pl.len().over("source", "person_id"))
        .join(shown, on=["source", "record_id"], how="left")
        .sort("source", "person_id", "record_id")
        .with_columns(group=pl.struct("source", "person_id").rank("dense").cast(pl.Int64))
    )
    # Which fields the group's records disagree on: what the clerk checks before keeping one.
    compared = [f for f in RECORD_HEADERS if f not in ("person_id", "source", "record_id")]
    differing = pl.concat_list(
        [
            pl.when(pl.col(f).n_unique().over("group") > 1).then(pl.lit(RECORD_HEADERS[f])).otherwise(None)
            for f in compared
        ]
    ).list.drop_nulls()
    dup = dup.with_columns(
        differs=pl.when(differing.list.len() > 0)
        .then(differing.list.join("、"))
        .otherwise(pl.lit("各字段相同"))
    )
    headers = {
        "group": "重复组",
        "records_in_group": "组内记录数",
        "differs": "组内不同的字段",
    } | RECORD_HEADERS
    return dup.select(list(headers)).sort("group", "record_id").rename(headers)


def masked_name(value: pl.Expr) -> pl.Expr:
    """``mask_name`` as an expression: 张三丰 -> 张**, at least one star."""
    length = value.str.len_chars()
    return pl.when(length == 0).then(value).otherwise(value.str.slice(0, 1).str.pad_end(pl.max_horizontal(length, 2), "*"))


def masked_id_number(value: pl.Expr) -> pl.Expr:
    """``mask_id_number`` as an expression: the first 6, 8 stars, the last 4 (short ones: the first 2)."""
    length = value.str.len_chars().cast(pl.Int64)  # signed: length - 2 may go below zero
    short = value.str.slice(0, 2).str.pad_end(pl.min_horizontal(length, 2) + pl.max_horizontal(length - 2, 1), "*")
    full = pl.concat_str([value.str.slice(0, 6), pl.lit("********"), value.str.tail(4)])
    return pl.when(length == 0).then(value).when(length <= 10).then(short).otherwise(full)


# Another department's birth date as its report shows it: every digit hidden, as the
# masked id hides its birth-date digits.
MASKED_DATE = "****-**-**"


def _other_value(field: str) -> pl.Expr:
    value = pl.col(f"{field}_other")
    if field == "name":
        return masked_name(value)
    if field == "id_number":
        return masked_id_number(value)
    if field == "birth_date":
        return pl.when(value.is_not_null()).then(pl.lit(MASKED_DATE)).otherwise(pl.lit(None, dtype=pl.String))
    if field == "sex":
        return value.replace_strict(SEX_LABELS, default=value)
    return value.cast(pl.String)


def _own_value(field: str) -> pl.Expr:
    value = pl.col(field)
    if field == "sex":
        return value.replace_strict(SEX_LABELS, default=value)
    return value.cast(pl.String)


def _positions(own: str, other: str) -> str:
    """1-based positions where two equal-length strings differ, runs joined: "7-10、17"."""
    diff = [i + 1 for i, (a, b) in enumerate(zip(own, other, strict=True)) if a != b]
    runs: list[str] = []
    start = prev = diff[0]
    for i in [*diff[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        runs.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return "、".join(runs)


def _hidden_range(field: str, length: int) -> tuple[int, int] | None:
    """The 1-based positions that the other department's masked value hides, as a range.

    A masked id shows its first 6 and last 4 characters (short ones: the first 2); a masked
    name its first character.
    """
    if field == "id_number":
        if length > 10:
            return 7, length - 4
        return (3, length) if length > 2 else None
    return (2, length) if length > 1 else None


def describe_difference(field: str, own: object, other: object) -> str:
    """Where a clerk should look, told without giving the other department's value away.

    The other value is shown masked beside the clerk's own, so a hint says nothing a clerk
    could read a hidden character from: which visible positions differ, never whether the
    hidden ones do (the clerk's own characters there would then be the other's), and of a
    birth date, all of it hidden, only that it differs.
    """
    if field == "birth_date" and isinstance(own, date) and isinstance(other, date):
        return "出生日期不同"
    if field == "sex":
        return "性别不同"
    own_text, other_text = str(own), str(other)
    unit = "位" if field == "id_number" else "字"
    if len(own_text) != len(other_text):
        return f"长度不同（本部门{len(own_text)}{unit}，对方{len(other_text)}{unit}）"
    hidden = _hidden_range(field, len(own_text))
    if hidden is None:
        return f"第{_positions(own_text, other_text)}{unit}不同"
    start, stop = hidden
    visible_own = own_text[: start - 1] + "*" * (stop - start + 1) + own_text[stop:]
    visible_other = other_text[: start - 1] + "*" * (stop - start + 1) + other_text[stop:]
    if visible_own == visible_other:
        # The values differ and every shown character agrees: the clerk sees that much already.
        return f"第{start}{unit}不同" if start == stop else f"第{start}-{stop}{unit}中有不同"
    shown_range = f"{start}" if start == stop else f"{start}-{stop}"
    return f"第{_positions(visible_own, visible_other)}{unit}不同（第{shown_range}{unit}不显示）"


def _hidden_range_exprs(field: str, length: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """``_hidden_range`` over a column of lengths: (start, stop), null where nothing is hidden."""
    if field == "id_number":
        start = pl.when(length > 10).then(pl.lit(7)).when(length > 2).then(pl.lit(3))
        stop = pl.when(length > 10).then(length - 4).when(length > 2).then(length)
    else:
        start = pl.when(length > 1).then(pl.lit(2))
        stop = pl.when(length > 1).then(length)
    return start.cast(pl.Int64), stop.cast(pl.Int64)


def difference_hints(differing: pl.DataFrame, field: str) -> pl.Series:
    """``describe_difference`` of each row's ``field`` and ``{field}_other``, as column ``hint``.

    Vectorised: a city's conflicts run to 10^5 rows. Text positions come from the two
    texts split into characters side by side, the hidden ones starred in both; runs of
    differing positions are joined.
    """
    own, other = pl.col(field), pl.col(f"{field}_other")
    own_type, other_type = differing.schema[field], differing.schema[f"{field}_other"]
    if field == "sex":
        return pl.Series("hint", ["性别不同"] * differing.height, dtype=pl.String)
    if field == "birth_date" and own_type == other_type == pl.Date:
        return pl.Series("hint", ["出生日期不同"] * differing.height, dtype=pl.String)
    if not own_type == other_type == pl.String:
        hints = [describe_difference(field, a, b) for a, b in differing.select(own, other).iter_rows()]
        return pl.Series("hint", hints, dtype=pl.String)
    unit = "位" if field == "id_number" else "字"
    own_length, other_length = pl.col("own").str.len_chars().cast(pl.Int64), pl.col("other").str.len_chars()
    start, stop = _hidden_range_exprs(field, own_length)

    def starred(text: pl.Expr) -> pl.Expr:
        return (
            pl.when(pl.col("start").is_null())
            .then(text)
            .otherwise(
                pl.concat_str(
                    [text.str.slice(0, pl.col("start") - 1).str.pad_end(pl.col("stop"), "*"),
                     text.str.slice(pl.col("stop"))]
                )
            )
        )

    texts = (
        differing.select(own.alias("own"), other.alias("other"))
        .with_row_index("row")
        .with_columns(start=start, stop=stop)
    )
    characters = (
        texts.filter(own_length == other_length)
        .select("row", starred(pl.col("own")).str.split(""), starred(pl.col("other")).str.split(""))
        .explode("own", "other")
        .with_columns(position=pl.int_range(1, pl.len() + 1).over("row"))
        .filter(pl.col("own") != pl.col("other"))
    )
    # A run of differing positions starts where a position does not follow the one before.
    runs = (
        characters.with_columns(
            run=(pl.col("position").diff().over("row") != 1).fill_null(True).cum_sum().over("row")
        )
        .group_by("row", "run", maintain_order=True)
        .agg(start=pl.col("position").min(), stop=pl.col("position").max())
        .group_by("row", maintain_order=True)
        .agg(
            pl.when(pl.col("start") == pl.col("stop"))
            .then(pl.col("start").cast(pl.String))
            .otherwise(pl.concat_str([pl.col("start"), pl.lit("-"), pl.col("stop")]))
            .str.join("、")
            .alias("positions")
        )
    )
    hidden = (
        pl.when(pl.col("start") == pl.col("stop"))
        .then(pl.col("start").cast(pl.String))
        .otherwise(pl.concat_str([pl.col("start"), pl.lit("-"), pl.col("stop")]))
    )
    return (
        texts.join(runs, on="row", how="left", maintain_order="left")
        .select(
            pl.when(own_length != other_length)
            .then(
                pl.concat_str(
                    [pl.lit("长度不同（本部门"), own_length, pl.lit(f"{unit}，对方"), other_length, pl.lit(f"{unit}）")]
                )
            )
            .when(pl.col("positions").is_null() & (pl.col("start") == pl.col("stop")))
            .then(pl.concat_str([pl.lit("第"), hidden, pl.lit(f"{unit}不同")]))
            .when(pl.col("positions").is_null())
            .then(pl.concat_str([pl.lit("第"), hidden, pl.lit(f"{unit}中有不同")]))
            .when(pl.col("start").is_null())
            .then(pl.concat_str([pl.lit("第"), pl.col("positions"), pl.lit(f"{unit}不同")]))
            .otherwise(
                pl.concat_str(
                    [pl.lit("第"), pl.col("positions"), pl.lit(f"{unit}不同（第"), hidden, pl.lit(f"{unit}不显示）")]
                )
            )
            .alias("hint")
        )
        .to_series()
    )


def _conflicts(candidates: dict[str, pl.DataFrame], sources: tuple[str, ...]) -> pl.DataFrame:
    parts = []
    for field in COMPARED_FIELDS:
        extra = ["name_script"] if field == "name" else []
        own_source = pl.col("source").is_in(list(sources))
        compared = (
            candidates[field]
            .filter(own_source)
            .select("person_id", "source", "record_id", field, *extra)
            .join(
                candidates[field]
                .filter(~own_source)
                .select(
                    "person_id",
                    *(pl.col(c).alias(f"{c}_other") for c in ("source", "department", field, *extra)),
                ),
                on="person_id",
            )
        )
        if field == "name":
            # 张伟 against ZHANG WEI is one name in two scripts, not a disagreement.
            compared = compared.filter(pl.col("name_script").eq_missing(pl.col("name_script_other")))
        # How many other sources back the department's own value: a clerk checks first
        # the values that every other department contradicts.
        backing = (
            compared.filter(pl.col(field) == pl.col(f"{field}_other"))
            .group_by("source", "record_id")
            .agg(agreeing=pl.col("source_other").n_unique())
        )
        differing = compared.filter(pl.col(field) != pl.col(f"{field}_other"))
        if differing.is_empty():
            continue
        parts.append(
            differing.with_columns(difference_hints(differing, field))
            .join(backing, on=["source", "record_id"], how="left")
            .select(
                "person_id",
                "source",
                "record_id",
                pl.lit(FIELD_LABELS[field]).alias("field"),
                _own_value(field).alias("own_value"),
                pl.col("department_other").alias("other_department"),
                pl.col("source_other").alias("other_source"),
                _other_value(field).alias("other_value"),
                "hint",
                pl.col("agreeing").fill_null(0).cast(pl.Int64),
            )
        )
    headers = {
        "person_id": "人员编号",
        "source": "数据源",
        "record_id": "记录编号",
        "field": "不一致字段",
        "own_value": "本部门值",
        "other_department": "对方部门",
        "other_source": "对方数据源",
        "other_value": "对方值（已脱敏）",
        "hint": "差异位置",
        "agreeing": "与本部门一致的其他数据源数",
    }
    if not parts:
        schema = {h: pl.String for h in headers.values()} | {"与本部门一致的其他数据源数": pl.Int64}
        return pl.DataFrame(schema=schema)
    order = {label: i for i, label in enumerate(FIELD_LABELS.values())}
    return (
        pl.concat(parts)
        .unique(maintain_order=True)
        .with_columns(_field_order=pl.col("field").replace_strict(order, return_dtype=pl.Int8))
        .sort("person_id", "source", "record_id", "_field_order", "other_source", "other_value")
        .drop("_field_order")
        .rename(headers)
    )


_FINDING_HEADERS = {
    "person_id": "人员编号",
    "source": "数据源",
    "record_id": "记录编号",
    "name": "姓名",
    "id_number": "公民身份号码",
    "household_id": "户号",
    "detail": "说明",
    "related_department": "相关部门",
}


def _finding_sheet(kind_rows: pl.DataFrame, shown: pl.DataFrame) -> pl.DataFrame:
    frame = (
        kind_rows.join(
            shown.select("source", "record_id", "name", "id_number", "household_id"),
            on=["source", "record_id"],
            how="left",
        )
        .with_columns(household_id=pl.coalesce("household_id", "own_household_id"))
        .select(list(_FINDING_HEADERS))
        .sort("person_id", "source", "record_id", nulls_last=True)
    )
    return frame.rename(_FINDING_HEADERS)


def _findings_for(findings: pl.DataFrame, department: str, sources: tuple[str, ...]) -> pl.DataFrame:
    """Own evidence rows, then rows on other departments' records that concern this one."""
    own = findings.filter(pl.col("source").is_in(list(sources)))
    related = findings.filter(
        ~pl.col("source").is_in(list(sources)) & (pl.col("related_department") == department)
    )
    # Shown by its other department only: who and what, not which record of theirs; and the
    # department's own number of the household in question, which the detail masks (many of
    # its households mask alike).
    related = related.join(own, on=["kind", "person_id", "detail"], how="anti").with_columns(
        source=pl.concat_str([pl.lit("（"), pl.col("department"), pl.lit("记录）")]),
        record_id=pl.lit(None, dtype=pl.String),
        related_department=pl.col("department"),
        own_household_id=pl.col("related_household_id"),
    )
    own = own.with_columns(
        related_department=pl.when(pl.col("related_department") != department).then(
            pl.col("related_department")
        ),
        own_household_id=pl.lit(None, dtype=pl.String),
    )
    columns = ["kind", "person_id", "source", "record_id", "detail", "related_department", "own_household_id"]
    return pl.concat([own.select(columns), related.select(columns).unique(maintain_order=True)])


_REJECTED_SCHEMA = {"source": pl.String, "file": pl.String, "sheet": pl.String, "file_row": pl.Int64,
                    "row_number": pl.Int64, "record_id": pl.String, "reason": pl.String}


def rejected_rows(quarantine: pl.DataFrame | None) -> pl.DataFrame:
    """``source, file, sheet, file_row, row_number, record_id, reason`` of the quarantine
    table's rows, by source, file and row; ``record_id`` the department's own value
    (``own_record_id``) where the table keeps it; ``sheet`` and ``file_row`` empty where the
    table has none (a run from before them). Columns are taken by name: the table may hold others."""
    if quarantine is None:
        return pl.DataFrame(schema=_REJECTED_SCHEMA)
    record_id = QUARANTINE_OWN_RECORD_ID if QUARANTINE_OWN_RECORD_ID in quarantine.columns else "record_id"
    return (
        quarantine.select(
            *(
                (pl.col(c) if c in quarantine.columns else pl.lit(None)).cast(t).alias(c)
                for c, t in _REJECTED_SCHEMA.items()
                if c != "record_id"
            ),
            pl.col(record_id).cast(pl.String).alias("record_id"),
        )
        .select(list(_REJECTED_SCHEMA))
        .sort("source", "file", "row_number", maintain_order=True)
    )


def _rejected_sheet(rejected: pl.DataFrame, sources: tuple[str, ...]) -> pl.DataFrame:
    """The department's own rejected rows (``rejected``: from ``rejected_rows``), in its order."""
    return rejected.filter(pl.col("source").is_in(list(sources))).rename(REJECTED_HEADERS)


def _departments_with_sources(departments: pl.DataFrame, sources: Iterable[tuple[str, str]]) -> pl.DataFrame:
    """``departments`` with each ``(source, department)`` of ``sources`` that it lacks: the
    source joins its department's sources, after theirs; a department with no record gets a
    row of its own (0 records, 0 persons) after the others. A source whose every row was
    rejected has no record, and its department's clerk must still see those rows."""
    rows = [list(row) for row in departments.iter_rows()]
    by_department = {row[0]: row for row in rows}
    known = {source for row in rows for source in row[1]}
    added = False
    for source, department in sources:
        if source in known:
            continue
        known.add(source)
        added = True
        if department not in by_department:
            by_department[department] = [department, [], 0, 0]
            rows.append(by_department[department])
        by_department[department][1] = [*by_department[department][1], source]
    if not added:
        return departments
    return pl.DataFrame(rows, schema=departments.schema, orient="row")


def _rejected_departments(
    departments: pl.DataFrame, rejected: pl.DataFrame, source_departments: Mapping[str, str] | None
) -> pl.DataFrame:
    """``departments`` with every source of the sources file (``source_departments``: source
    -> department) and every source of ``rejected``: a source that neither the records nor the
    sources file places stands for a department of its own, as a record without a department
    does."""
    named = dict(source_departments or {})
    rejected_sources = rejected.get_column("source").unique(maintain_order=True).to_list()
    return _departments_with_sources(
        departments, [*named.items(), *((s, s) for s in rejected_sources if s not in named)]
    )


def _with_departments(findings: pl.DataFrame, source_departments: pl.DataFrame) -> pl.DataFrame:
    """``findings`` with the contract's text columns, ``department`` and ``related_department``.

    ``source_departments``: ``source, department``, one row per source.
    """
    departments = source_departments.select("source", pl.col("department").alias("_dept"))
    # An empty findings frame may come untyped (all-null columns): the contract's are text.
    findings = findings.with_columns(
        pl.col(c).cast(pl.String) for c in FINDING_COLUMNS if c in findings.columns
    )
    frame = findings.join(departments, on="source", how="left").with_columns(
        pl.col(extra).cast(pl.String) if extra in findings.columns
        # department falls back to the source's below; the others are empty.
        else (pl.col("_dept") if extra == "department" else pl.lit(None, dtype=pl.String)).alias(extra)
        for extra in EXTRA_COLUMNS
    )
    return frame.with_columns(pl.col("department").fill_null(pl.col("_dept"))).drop("_dept")


def _summary(
    department: str, sources: tuple[str, ...], records: int, persons: int, sheets: list[ReportSheet]
) -> pl.DataFrame:
    rows = [
        {
            "项目": "本部门数据源",
            "记录数": records,
            "人数": persons,
            "说明": "、".join(sources),
            "其中他部门记录": 0,
        },
    ]
    for sheet in sheets:
        frame = sheet.frame
        # A sheet without persons (the rejected rows, linked to nobody) leaves 人数 empty.
        persons = (
            (frame.get_column("人员编号").n_unique() if frame.height else 0) if "人员编号" in frame.columns else None
        )
        # Rows shown on another department's record (数据源 "（民政局记录）", no record id): they
        # concern this department, but metrics.json counts each finding under the department
        # whose record is its evidence, so the auditor needs them apart to make the two agree.
        others = (
            frame.filter(pl.col("数据源").str.starts_with("（") & pl.col("记录编号").is_null()).height
            if frame.height and {"数据源", "记录编号"} <= set(frame.columns)
            else 0
        )
        rows.append(
            {
                "项目": sheet.title,
                "记录数": frame.height,
                "人数": persons,
                "说明": KIND_ADVICE.get(sheet.key, ""),
                "其中他部门记录": others,
            }
        )
    return pl.DataFrame(
        rows,
        schema={"项目": pl.String, "记录数": pl.Int64, "人数": pl.Int64, "说明": pl.String, "其中他部门记录": pl.Int64},
    )


def build_department_reports(
    std: pl.DataFrame,
    entity_map: pl.DataFrame,
    findings: pl.DataFrame,
    quarantine: pl.DataFrame | None = None,
    source_departments: Mapping[str, str] | None = None,
) -> dict[str, DepartmentReport]:
    """department -> its report: 汇总, 重复登记, 与其他部门不一致, one sheet per finding kind,
    then 未入库记录 (its own rows of ``quarantine``, the ingest's rejected rows).

    Every department of ``std``, of ``source_departments`` (source -> department, as the
    sources file says) and of ``quarantine`` gets a report with every sheet, empty ones
    included, so the clerk's workbook has the same layout every night.
    """
    reports = iter_department_reports(std, entity_map, findings, quarantine, source_departments)
    return {report.department: report for report in reports}


@dataclass(frozen=True)
class ReportInputs:
    """What the department reports are built from: the city reduced to the rows they show.

    ``departments``: ``department, sources, records, persons`` in the order of each
    department's first record, ``sources`` in the order of each source's first record, the
    counts over all of the department's records. ``candidates``: per compared field,
    ``person_id, source, record_id, department`` and the field (``name_script`` too for
    names) of the records of persons whose records hold two or more values of it: only
    these can disagree with another department, and every other source that backs a
    disagreeing record's value is among them. ``duplicates``: ``source, record_id,
    person_id`` of the records sharing a person with another record of their source.
    ``shown``: the own values (``_own_values``) of duplicate records and of records with
    findings. ``findings``: with ``department`` and ``related_department``. ``rejected``: the
    rows rejected at ingest (``rejected_rows``), whose sources are among ``departments``'.
    """

    departments: pl.DataFrame
    candidates: dict[str, pl.DataFrame]
    duplicates: pl.DataFrame
    shown: pl.DataFrame
    findings: pl.DataFrame
    rejected: pl.DataFrame


def report_inputs(
    std: pl.DataFrame,
    entity_map: pl.DataFrame,
    findings: pl.DataFrame,
    quarantine: pl.DataFrame | None = None,
    source_departments: Mapping[str, str] | None = None,
) -> ReportInputs:
    """``ReportInputs`` of polars frames; ``std`` in record order, with ``REPORT_COLUMNS`` at least;
    ``quarantine`` as the table (``source, file, row_number, record_id, reason`` at least)."""
    persons = entity_map.select("source", "record_id", "person_id").unique(subset=["source", "record_id"])
    # The person ids as one more column: the other columns are shared with ``std``, not copied.
    person_id = (
        std.select("source", "record_id")
        .join(persons, on=["source", "record_id"], how="left", maintain_order="left")
        .get_column("person_id")
    )
    std = std.drop("person_id", strict=False).with_columns(person_id)
    records = _records(std)
    departments = records.group_by("department", maintain_order=True).agg(
        pl.col("source").unique(maintain_order=True).alias("sources"),
        pl.len().alias("records"),
        pl.col("person_id").n_unique().alias("persons"),
    )
    known = records.filter(pl.col("person_id").is_not_null())
    candidates = {}
    for field in COMPARED_FIELDS:
        extra = ["name_script"] if field == "name" else []
        candidates[field] = (
            known.select("person_id", "source", "record_id", "department", field, *extra)
            .filter(pl.col(field).is_not_null())
            .filter(pl.col(field).n_unique().over("person_id") > 1)
        )
    duplicates = known.filter(pl.len().over("source", "person_id") >= 2).select("source", "record_id", "person_id")
    findings = _with_departments(findings, records.select("source", "department").unique(subset=["source"]))
    shown_keys = pl.concat([duplicates.select("source", "record_id"), findings.select("source", "record_id")])
    shown = _own_values(std.join(shown_keys.unique(), on=["source", "record_id"], how="semi", maintain_order="left"))
    rejected = rejected_rows(quarantine)
    departments = _rejected_departments(departments, rejected, source_departments)
    return ReportInputs(departments, candidates, duplicates, shown, findings, rejected)


def _table_columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    return {row[0] for row in con.execute(f"describe {table}").fetchall()}


def _select_or_null(name: str, present: set[str], sql_type: str = "varchar") -> str:
    return f'"{name}"' if name in present else f'cast(null as {sql_type}) as "{name}"'


def report_records_sql(present: set[str], standardized: str, entity_map: str) -> str:
    """The compared view of every record (``_records``) with ``record_key``, as SQL."""
    department = "coalesce(s.department, s.source)" if "department" in present else "s.source"
    return f"""
        select s.record_key, s.source, s.record_id, {department} as department,
               {_select_or_null("name", present)}, {_select_or_null("name_script", present)},
               {_select_or_null("id_number", present)},
               cast({_select_or_null("birth_date", present, "date")} as date) as birth_date,
               {_select_or_null("sex", present)}, e.person_id
        from {standardized} s left join {entity_map} e on e.record_key = s.record_key
    """


def report_inputs_from_duckdb(
    con: duckdb.DuckDBPyConnection,
    *,
    standardized: str = "int_persons_standardized",
    entity_map: str = "entity_map",
    findings: str = "household_findings",
    raw_values: str = RAW_VALUES_VIEW,
    quarantine: str = "quarantine",
    source_departments: Mapping[str, str] | None = None,
) -> ReportInputs:
    """The ``ReportInputs`` of ``report_inputs``, reduced inside DuckDB from its tables.

    The city's records never come into Python: DuckDB hands over the departments' counts,
    the conflict candidates, the duplicates and the shown rows (a few per cent of the
    records at a million), in record_key order as ``report_inputs`` keeps them.
    ``entity_map`` joins ``standardized`` on ``record_key``; so does ``raw_values`` (the
    departments' own spellings) for the raw columns ``standardized`` does not hold itself.
    """
    present = _table_columns(con, standardized)
    # One join of the records with their persons, kept for the queries below (~0.1 GB at a
    # million records): each query joining afresh took longer than all of them together.
    records = "__renhu__report_records"
    con.execute(f"create or replace temp table {records} as {report_records_sql(present, standardized, entity_map)}")
    try:
        by_source = con.execute(
            f"select department, source, min(record_key) as first_key from {records} group by all order by first_key"
        ).pl()
        counts = con.execute(
            f"""
            select department, count(*) as records,
                   count(distinct person_id) + max(case when person_id is null then 1 else 0 end) as persons,
                   min(record_key) as first_key
            from {records} group by all order by first_key
            """
        ).pl()
        departments = counts.join(
            by_source.group_by("department", maintain_order=True).agg(pl.col("source").alias("sources")),
            on="department",
            maintain_order="left",
        ).select("department", "sources", pl.col("records").cast(pl.UInt32), pl.col("persons").cast(pl.UInt32))
        # Persons with two or more values of a compared field, then their records. The values
        # are told apart by their 64-bit hashes: fixed-size aggregates over ~700k persons cost
        # half of min/max over the strings (the same persons on the 1M city; two values of one
        # person would have to collide in 64 bits to be missed).
        several = {
            f: f"min(hash({f})) filter (where {f} is not null) <> max(hash({f})) filter (where {f} is not null)"
            for f in COMPARED_FIELDS
        }
        compared = con.execute(
            f"""
            with persons as (
                select person_id, {", ".join(f"{test} as several_{f}" for f, test in several.items())}
                from {records} where person_id is not null
                group by person_id having {" or ".join(several.values())}
            )
            select r.* exclude (record_key),
                   {", ".join(f"r.{f} is not null and coalesce(p.several_{f}, false) as several_{f}" for f in several)}
            from {records} r join persons p using (person_id)
            order by r.record_key
            """
        ).pl()
        candidates = {}
        for field in COMPARED_FIELDS:
            extra = ["name_script"] if field == "name" else []
            candidates[field] = compared.filter(pl.col(f"several_{field}")).select(
                "person_id", "source", "record_id", "department", field, *extra
            )
        del compared
        duplicates = con.execute(
            f"""
            with repeated as (
                select source, person_id from {records} where person_id is not null
                group by all having count(*) >= 2
            )
            select record_key, source, record_id, person_id from {records} semi join repeated using (source, person_id)
            order by record_key
            """
        ).pl()
        finding_rows = _with_departments(
            con.execute(f"select * from {findings}").pl(),
            by_source.select("source", "department").unique(subset=["source"], keep="first", maintain_order=True),
        )
        # Only the columns the own values read: every column of the table took longer to scan.
        shown_columns = [
            f's."{c}"' for c in dict.fromkeys(REPORT_COLUMNS) if c in present and c not in ("department", "name_script")
        ]
        # A few per cent of the records are shown: both tables are cut to them before they are
        # joined (10M city, 4% of the records shown: 8.3 -> 1.3 s for this query).
        raw_join, raw_columns = raw_values_join(
            con, present, dict.fromkeys(REPORT_COLUMNS), raw_values, only_keys="shown_keys"
        )
        shown_columns += raw_columns
        con.register("__renhu__duplicate_keys", duplicates.select("record_key"))
        con.register("__renhu__finding_keys", finding_rows.select("source", "record_id"))
        try:
            shown = _own_values(
                con.execute(
                    f"""
                    with shown_keys as (
                        select record_key from __renhu__duplicate_keys
                        union
                        select record_key from {records} semi join __renhu__finding_keys using (source, record_id)
                    )
                    select {", ".join(shown_columns)}
                    from (select * from {standardized} semi join shown_keys using (record_key)) s {raw_join}
                    order by s.record_key
                    """
                ).pl()
            )
        finally:
            con.unregister("__renhu__duplicate_keys")
            con.unregister("__renhu__finding_keys")
        duplicates = duplicates.drop("record_key")
    finally:
        con.execute(f"drop table if exists {records}")
    # The rejected rows, sorted by DuckDB: tens of thousands at ten million records.
    quarantine_columns = _table_columns(con, quarantine)
    own_id = QUARANTINE_OWN_RECORD_ID if QUARANTINE_OWN_RECORD_ID in quarantine_columns else "record_id"
    file_row = "file_row" if "file_row" in quarantine_columns else "null::integer as file_row"
    sheet = f'"{QUARANTINE_SHEET}"' if QUARANTINE_SHEET in quarantine_columns else "null::varchar"
    rejected = rejected_rows(
        con.execute(
            f"""
            select source, file, {sheet} as sheet, {file_row}, row_number, "{own_id}" as record_id, reason
            from {quarantine}
            order by source, file, row_number
            """
        ).pl()
    )
    departments = _rejected_departments(departments, rejected, source_departments)
    return ReportInputs(departments, candidates, duplicates, shown, finding_rows, rejected)


def iter_department_reports(
    std: pl.DataFrame,
    entity_map: pl.DataFrame,
    findings: pl.DataFrame,
    quarantine: pl.DataFrame | None = None,
    source_departments: Mapping[str, str] | None = None,
) -> Iterator[DepartmentReport]:
    """The reports of ``build_department_reports`` one department at a time, in the same order.

    A writer that writes each report before asking for the next holds one department's
    sheets at a time rather than every department's. ``std`` needs only ``REPORT_COLUMNS``.
    """
    return iter_reports(report_inputs(std, entity_map, findings, quarantine, source_departments))


def iter_reports(inputs: ReportInputs) -> Iterator[DepartmentReport]:
    """Each department's report from ``inputs``, one at a time, in the order of ``inputs.departments``."""
    findings = inputs.findings
    kinds = list(FINDING_KINDS) + sorted(
        set(findings.get_column("kind").unique().to_list()) - set(FINDING_KINDS)
    )
    for department, source_list, record_count, person_count in inputs.departments.iter_rows():
        sources = tuple(source_list)
        own_source = pl.col("source").is_in(list(sources))
        own_shown = inputs.shown.filter(own_source)
        sheets = [
            ReportSheet("duplicates", "重复登记", _duplicates(inputs.duplicates.filter(own_source), own_shown)),
            ReportSheet("conflicts", "与其他部门不一致", _conflicts(inputs.candidates, sources)),
        ]
        dept_findings = _findings_for(findings, department, sources)
        for kind in kinds:
            rows = dept_findings.filter(pl.col("kind") == kind)
            sheets.append(ReportSheet(kind, KIND_LABELS.get(kind, kind), _finding_sheet(rows, own_shown)))
        sheets.append(ReportSheet(REJECTED_KEY, REJECTED_TITLE, _rejected_sheet(inputs.rejected, sources)))
        summary = ReportSheet(
            "summary", "汇总", _summary(department, sources, record_count, person_count, sheets)
        )
        yield DepartmentReport(department, sources, (summary, *sheets))
