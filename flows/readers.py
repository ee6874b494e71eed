"""Read one extract file into text cells, row by row, without ever stopping on a bad row.

Each reader returns an `Extract`: the header, the rows that could be read (as text
cells keyed by the extract's own column names) with their 1-based data row numbers,
and the rows that could not be read with a reason. Cells are text because the
departments' systems disagree on types; standardization decides what a value means.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flows.config import ConfigError


@dataclass
class RejectedRow:
    row_number: int
    reason_code: str
    reason: str
    record_id: str | None = None


@dataclass
class Extract:
    file: Path
    sha256: str
    size_bytes: int
    header: list[str]
    # column name -> cell texts, aligned with row_numbers
    cells: dict[str, list[str | None]] = field(default_factory=dict)
    row_numbers: list[int] = field(default_factory=list)
    rejected: list[RejectedRow] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return len(self.row_numbers) + len(self.rejected)


def file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def cell_text(value: object) -> str | None:
    """One cell as text; dates as ISO, whole numbers without a trailing .0 or exponent."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if abs(value) >= 1e15:
            # Excel keeps 15 significant digits: an 18-digit id typed as a number is already
            # cut to 330602199001021000 in the workbook. Show what the clerk sees, not float noise.
            return format(Decimal(format(value, ".15g")).to_integral_value(), "f")
        if value.is_integer():
            return str(int(value))
        return format(Decimal(repr(value)), "f")
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value).strip() or None


def python_encoding(encoding: str) -> str:
    # utf-8-sig reads files with and without a BOM alike; Excel writes the BOM.
    return "utf-8-sig" if encoding.lower().replace("_", "-") in {"utf-8", "utf8"} else encoding


def check_columns(file: Path, header: list[str], required: list[str], source: str) -> None:
    present = set(header)
    for column in required:
        if column not in present:
            shown = ", ".join(header[:12]) + (" …" if len(header) > 12 else "")
            raise ConfigError(
                f"{file}: column '{column}' (mapped for source '{source}') is not in the extract; it has: {shown}"
            )


def _new_extract(file: Path, header: list[str]) -> Extract:
    sha256, size = file_digest(file)
    return Extract(file=file, sha256=sha256, size_bytes=size, header=header, cells={c: [] for c in header})


def _append(extract: Extract, row_number: int, values: list[str | None]) -> None:
    extract.row_numbers.append(row_number)
    for column, value in zip(extract.header, values, strict=True):
        extract.cells[column].append(value)


def read_csv(file: Path, encoding: str, required: list[str], source: str, record_id_column: str) -> Extract:
    raw = file.read_bytes()
    codec = python_encoding(encoding)
    try:
        text = raw.decode(codec)
        lines: list[tuple[str | None, bytes]] | None = None
    except UnicodeDecodeError:
        # Decode line by line so one bad row does not cost the file. Splitting bytes on
        # LF is safe for UTF-8 and GB18030: neither uses 0x0A inside a multi-byte character.
        text = None
        lines = []
        for index, line in enumerate(raw.split(b"\n")):
            if index == 0 and codec == "utf-8-sig" and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            try:
                lines.append((line.decode(codec), line))
            except UnicodeDecodeError:
                lines.append((None, line))
    if text is not None:
        records = csv.reader(io.StringIO(text, newline=""))
        try:
            header_cells = next(records)
        except StopIteration:
            raise ConfigError(f"{file}: the file is empty (no header row)") from None
        rows = ((row, None) for row in records)
    else:
        assert lines is not None
        while lines and lines[-1][0] == "":
            lines.pop()
        if not lines or lines[0][0] is None:
            raise ConfigError(f"{file}: the header row is not valid {encoding}")
        header_cells = next(csv.reader([lines[0][0]]))

        def line_rows():
            for decoded, original in lines[1:]:
                if decoded is None:
                    yield None, original
                else:
                    yield next(csv.reader([decoded]), []), None

        rows = line_rows()
    header = [h.strip() for h in header_cells]
    check_columns(file, header, required, source)
    extract = _new_extract(file, header)
    width = len(header)
    record_id_index = header.index(record_id_column) if record_id_column in header else None
    row_number = 0
    for row, _original_bytes in rows:
        if row is None:
            row_number += 1
            extract.rejected.append(
                RejectedRow(
                    row_number,
                    "undecodable_bytes",
                    f"第{row_number}行含有无法按 {encoding} 解码的字节，请检查导出编码 "
                    f"(row {row_number} has bytes that are not valid {encoding})",
                )
            )
            continue
        if not row or (len(row) == 1 and not row[0].strip()):
            continue  # a blank line is not a data row
        row_number += 1
        if len(row) != width:
            record_id = row[record_id_index].strip() or None if record_id_index is not None and record_id_index < len(row) else None
            extract.rejected.append(
                RejectedRow(
                    row_number,
                    "wrong_column_count",
                    f"第{row_number}行有{len(row)}列，表头有{width}列，可能是字段中含逗号或换行 "
                    f"(row {row_number} has {len(row)} fields, the header has {width})",
                    record_id,
                )
            )
            continue
        _append(extract, row_number, [cell_text(v) for v in row])
    return extract


def read_xlsx(file: Path, required: list[str], source: str) -> Extract:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(file, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises several unrelated types for a broken file
        raise ConfigError(f"{file}: not a readable XLSX workbook ({type(error).__name__}: {error})") from None
    try:
        sheet = workbook.worksheets[0]
        rows = sheet.iter_rows(values_only=True)
        header_row = next(rows, None)
        if header_row is None:
            raise ConfigError(f"{file}: the first sheet is empty (no header row)")
        header = [cell_text(v) or "" for v in header_row]
        while header and header[-1] == "":
            header.pop()
        check_columns(file, header, required, source)
        extract = _new_extract(file, header)
        width = len(header)
        row_number = 0
        for values in rows:
            texts = [cell_text(v) for v in values]
            if all(t is None for t in texts):
                continue
            row_number += 1
            texts = (texts + [None] * width)[:width] if len(texts) != width else texts
            _append(extract, row_number, texts)
        return extract
    finally:
        workbook.close()


def read_parquet(file: Path, required: list[str], source: str) -> Extract:
    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError) as error:
        raise ConfigError(f"{file}: not a readable Parquet file ({error})") from None
    header = table.column_names
    check_columns(file, header, required, source)
    extract = _new_extract(file, header)
    extract.row_numbers = list(range(1, table.num_rows + 1))
    for column in header:
        values = table.column(column)
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            extract.cells[column] = [cell_text(v) for v in values.to_pylist()]
        else:
            extract.cells[column] = [cell_text(v) for v in values.to_pylist()]
    return extract


def read_jsonl(file: Path, encoding: str, required: list[str], source: str, record_id_key: str) -> Extract:
    codec = python_encoding(encoding)
    objects: list[tuple[int, dict]] = []
    rejected: list[RejectedRow] = []
    keys: dict[str, None] = {}
    row_number = 0
    with file.open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            row_number += 1
            try:
                value = json.loads(line.decode(codec))
            except UnicodeDecodeError:
                rejected.append(
                    RejectedRow(
                        row_number,
                        "undecodable_bytes",
                        f"第{row_number}行含有无法按 {encoding} 解码的字节 (line {row_number} is not valid {encoding})",
                    )
                )
                continue
            except json.JSONDecodeError as error:
                rejected.append(
                    RejectedRow(
                        row_number,
                        "unreadable_row",
                        f"第{row_number}行不是完整的 JSON 记录，可能被截断 (line {row_number} is not valid JSON: {error.msg})",
                    )
                )
                continue
            if not isinstance(value, dict):
                rejected.append(
                    RejectedRow(
                        row_number,
                        "unreadable_row",
                        f"第{row_number}行不是一条记录(JSON 对象) (line {row_number} is a JSON {type(value).__name__}, not an object)",
                    )
                )
                continue
            for key in value:
                keys.setdefault(key, None)
            objects.append((row_number, value))
    header = list(keys)
    check_columns(file, header, required, source)
    extract = _new_extract(file, header)
    extract.rejected = rejected
    for number, value in objects:
        _append(extract, number, [cell_text(value.get(column)) for column in header])
    return extract
