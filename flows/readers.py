"""Read one extract file into text cells, row by row, without ever stopping on a bad row.

Each reader returns an `Extract`: the header, the rows that could be read (as text
cells keyed by the extract's own column names) with their 1-based data row numbers
and the row where a clerk finds each in the file (`file_row`), and the rows that could
not be read with a reason. Cells are text because the
departments' systems disagree on types; standardization decides what a value means.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import hashlib
import io
import itertools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from flows.config import ConfigError


@dataclass
class RejectedRow:
    row_number: int
    reason_code: str
    reason: str
    record_id: str | None = None
    file_row: int | None = None  # see `row_place`


@dataclass
class Extract:
    file: Path
    sha256: str
    size_bytes: int
    header: list[str]
    # one String column per header column plus `row_number` and `file_row` (Int32, see
    # `row_place`); cells trimmed, empty -> null
    frame: pl.DataFrame = field(default_factory=pl.DataFrame)
    rejected: list[RejectedRow] = field(default_factory=list)
    # A workbook whose data runs over several sheets: (sheet name, first and last row_number
    # of its rows), for a reason to say where a row is; empty for every other file.
    sheets: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return self.frame.height + len(self.rejected)


def file_digest(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


# Beijing time, UTC+8, all year: the zone every department's clock shows.
CHINA_TIME = dt.timezone(dt.timedelta(hours=8))


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
        if value.tzinfo is not None:
            # A timestamp stored with its zone (Spark and most Parquet writers store UTC): as
            # the clerk's clock read it, China's one zone, so an evening is not the day before.
            value = value.astimezone(CHINA_TIME).replace(tzinfo=None)
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
            # Excel keeps 15 significant digits (and a float64 no more than 17): an 18-digit id
            # typed as a number is cut to 330602199001021000 in the workbook. The digits past
            # the 15th are unknown, not zeros: written as # (330602199001021###), so that no
            # rounded id passes its check character by chance (1 in 11 did) and is taken as
            # a valid, different id; standardization reads such a number as no id.
            digits = format(Decimal(format(value, ".15g")).to_integral_value(), "f")
            sign, body = ("-", digits[1:]) if digits.startswith("-") else ("", digits)
            return sign + body[:15] + "#" * (len(body) - 15)
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


# Byte order marks a text extract may start with, by the Python codec reading it: Excel's
# UTF-8 one, and GB18030's own (U+FEFF in GB18030), which would stay on the first column's name.
_BOMS = {"utf-8-sig": codecs.BOM_UTF8, "gb18030": "\ufeff".encode("gb18030")}


def without_bom(raw: bytes, encoding: str) -> bytes:
    """``raw`` (a file's start) without the byte order mark of ``encoding``."""
    bom = _BOMS.get(codecs.lookup(python_encoding(encoding)).name)
    return raw[len(bom):] if bom and raw.startswith(bom) else raw


def row_place(fmt: str, row_number: int, file_row: int | None, sheet: str | None = None,
              note: str | None = None) -> tuple[str, str]:
    """Where a clerk finds a row, in Chinese and in English, for a reason to name it.

    ``file_row`` is the row as the file shows it: in a CSV or JSON lines file the line its
    record starts on, as an editor numbers lines (the header, blank lines and a quoted
    field's line breaks counted); in a workbook the sheet's own Excel row (``sheet``: the
    sheet's name, given where the data runs over several). ``row_number`` is the data row
    (quarantine's ``row_number``: 1-based, header not counted), named beside it so that
    the two can be reconciled: 文件第6行(数据第5行). A Parquet file has no header: its row
    is the data row. ``note``: more to say inside the parentheses (更新时间 …; Chinese only).
    ``ingest.ROW_PLACE_MACROS`` words it the same in SQL.
    """
    data = f"数据第{row_number}行"
    if fmt == "parquet" or file_row is None:
        zh = (f"第{row_number}行" if file_row is not None else data) + (f"({note})" if note else "")
        en = f"row {row_number}" if file_row is not None else f"data row {row_number}"
        return zh, en
    inside = f"({data}，{note})" if note else f"({data})"
    if fmt != "xlsx":
        return f"文件第{file_row}行{inside}", f"line {file_row}, data row {row_number}"
    if sheet is not None:
        return f"工作表 {sheet} 第{file_row}行{inside}", f"sheet {sheet}, Excel row {file_row}, data row {row_number}"
    return f"Excel 第{file_row}行{inside}", f"Excel row {file_row}, data row {row_number}"


def check_columns(file: Path, header: list[str], required: list[str], source: str) -> None:
    present = set(header)
    for column in required:
        if column not in present:
            if not any(header):
                # A blank first row (a title row left empty, a workbook saved one row down): "it
                # has: " and nothing would leave the steward guessing.
                raise ConfigError(
                    f"{file}: column '{column}' (mapped for source '{source}') is not in the extract: its "
                    "first row is empty, and the header (the column names) must be on the first row"
                )
            shown = ", ".join(header[:12]) + (" …" if len(header) > 12 else "")
            raise ConfigError(
                f"{file}: column '{column}' (mapped for source '{source}') is not in the extract; it has: {shown}"
            )
        _refuse_repeated_mapped_columns(file, header, [column], source)


def _refuse_repeated_mapped_columns(file: Path, header: list[str], required: list[str], source: str,
                                    where: str = "") -> None:
    """A mapped column named twice in a header: which one is meant cannot be told.
    ``where``: the part of the file the header heads (a workbook's later sheet)."""
    for column in required:
        if (count := header.count(column)) > 1:
            raise ConfigError(
                f"{file}: {where}column '{column}' (mapped for source '{source}') appears {count} times in "
                f"{'its' if where else 'the'} header; which one is meant cannot be told: rename or remove the others"
            )


def unique_header(header: list[str]) -> list[str]:
    """The header with every repeated or empty name made unique (`备注#7`, `#9`: the name and
    its 1-based position). Only columns the mapping does not name can repeat (`check_columns`
    refuses a repeated mapped one): an export's extra blank or twice-named columns must not
    cost the night."""
    seen: set[str] = set()
    unique: list[str] = []
    for position, name in enumerate(header, start=1):
        if name in seen or not name:
            name = f"{name}#{position}"
            while name in seen or name in header:
                name += "#"
        seen.add(name)
        unique.append(name)
    return unique


def _frame(header: list[str], columns: list[list[str | None]] | list[pl.Series], row_numbers,
           file_rows) -> pl.DataFrame:
    data = {name: pl.Series(name, values, dtype=pl.String) for name, values in zip(header, columns, strict=True)}
    frame = pl.DataFrame(data) if data else pl.DataFrame()
    frame = frame.with_columns(
        [pl.col(c).str.strip_chars().replace("", None) for c in header]
    )
    return frame.with_columns(pl.Series("row_number", row_numbers, dtype=pl.Int32),
                              pl.Series("file_row", file_rows, dtype=pl.Int32))


def _data_rows(rows: int, rejected: list[RejectedRow]) -> pl.Series:
    """The data row numbers of the rows that were read (1 to ``rows``, less the rejected ones),
    made at once: a reader's loop keeps only each row's place in the file."""
    numbers = pl.int_range(1, rows + 1, dtype=pl.Int32, eager=True)
    return numbers.filter(~numbers.is_in([r.row_number for r in rejected])) if rejected else numbers


def _digest_of(file: Path, raw: bytes | None = None) -> tuple[str, int]:
    if raw is None:
        return file_digest(file)
    return hashlib.sha256(raw).hexdigest(), len(raw)


def _undecodable(fmt: str, row_number: int, file_row: int, encoding: str, record_id: str | None = None) -> RejectedRow:
    zh, en = row_place(fmt, row_number, file_row)
    return RejectedRow(
        row_number,
        "undecodable_bytes",
        f"{zh}含有无法按 {encoding} 解码的字节，请检查导出编码 ({en}: bytes that are not valid {encoding})",
        record_id,
        file_row,
    )


def _readable_id(cell: str | None) -> str | None:
    """A bad row's record id where that cell itself decoded (no replacement character): a
    clerk finds the row by it."""
    if cell is None or "\ufffd" in cell:
        return None
    return cell.strip() or None


def _aligned_id(cells: list[str], positions: tuple[int, ...], width: int) -> str | None:
    """A rejected row's record id, where it can be told: its record-id cells (several are
    joined with one space, empty parts skipped, as an accepted row's are). In a row whose
    fields do not line up with the header (a comma inside a name, a field missing), a cell
    past the first may be a neighbour's: a name or an identity number, and quarantine.parquet
    is published city-wide. Only the first cell cannot have moved."""
    parts = []
    for position in positions:
        if position >= len(cells) or (position > 0 and len(cells) != width):
            return None
        part = _readable_id(cells[position])
        if part is None and cells[position].strip():
            return None  # a part that did not decode: the rest alone would name another record
        if part is not None:
            parts.append(part)
    return " ".join(parts) or None


def _record_id_positions(header: list[str], record_id_columns: str | tuple[str, ...]) -> tuple[int, ...]:
    columns = (record_id_columns,) if isinstance(record_id_columns, str) else tuple(record_id_columns)
    return tuple(header.index(column) for column in columns)


def _wrong_width(row_number: int, file_row: int, found: int, width: int, record_id: str | None) -> RejectedRow:
    zh, en = row_place("csv", row_number, file_row)
    return RejectedRow(
        row_number,
        "wrong_column_count",
        f"{zh}有{found}列，表头有{width}列，可能是字段中含逗号或换行 ({en}: {found} fields, the header has {width})",
        record_id,
        file_row,
    )


def _decode_lines(raw: bytes, codec: str, replaced: str) -> tuple[list[str | None], dict[int, str]]:
    """Decode line by line so one bad row does not cost the file; None marks a bad line.
    Also returns each bad line as decoded with replacement characters, by its index: the
    record id it may still hold.

    ``replaced`` is the whole file decoded with bad bytes replaced: only its lines holding
    a replacement character need decoding on their own (a file of 366,000 lines: 0.7 s →
    0.1 s). Splitting bytes on LF is safe for UTF-8 and GB18030: neither uses 0x0A inside
    a multi-byte character. A decoder that swallowed a line break would change the line
    count: then every line is decoded on its own.
    """
    if raw.startswith(b"\xef\xbb\xbf") and codec == "utf-8-sig":
        raw = raw[3:]
    raw_lines = raw.split(b"\n")
    lines: list[str | None] = replaced.split("\n")
    if len(lines) != len(raw_lines):
        lines = [None] * len(raw_lines)
        suspects = range(len(raw_lines))
    else:
        suspects = [i for i, line in enumerate(lines) if "\ufffd" in line]
    bad: dict[int, str] = {}
    for i in suspects:
        try:
            lines[i] = raw_lines[i].decode(codec)
        except UnicodeDecodeError:
            bad[i] = raw_lines[i].decode(codec, errors="replace")
            lines[i] = None
    return lines, bad


def _decode(raw: bytes, codec: str) -> tuple[str, bool]:
    """The file's text with bad bytes replaced, and whether it had none: one pass over
    the bytes, where a strict decode failing at the last row would make it two."""
    text = raw.decode(codec, errors="replace")
    if "\ufffd" not in text:
        return text, True
    try:  # a replacement character in the file itself, or a bad byte
        return raw.decode(codec), True
    except UnicodeDecodeError:
        return text, False


def decodes_cleanly(file: Path, encoding: str) -> bool:
    """Every byte of the file is valid in ``encoding``: one streaming pass, 4 MB at a time,
    that keeps no text. A file that passes cannot be refused for its encoding at ingest."""
    decoder = codecs.getincrementaldecoder(python_encoding(encoding))("strict")
    try:
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def read_csv(
    file: Path, encoding: str, required: list[str], source: str, record_id_column: str | tuple[str, ...]
) -> Extract:
    """One CSV extract; ``record_id_column``: the record id's column, or its columns in order."""
    raw = file.read_bytes()
    sha256, size = _digest_of(file, raw)
    raw = without_bom(raw, encoding)
    codec = python_encoding(encoding)
    text, clean = _decode(raw, codec)
    # Quotes, or lines ending in CR alone (old Mac exports): the csv module splits the records.
    if '"' in text or ("\r" in text and "\n" not in text):
        if clean:
            physical, bad_lines = list(io.StringIO(text, newline="")), set()
        else:
            physical, bad_lines = _decode_physical_lines(raw, codec)
            _check_encoding(file, encoding, raw, len(bad_lines))
        del raw, text
        return _read_quoted_csv(file, physical, bad_lines, sha256, size, encoding, required, source,
                                record_id_column)
    replaced: dict[int, str] = {}
    if clean:
        lines: list[str | None] = text.split("\n")
    else:
        lines, replaced = _decode_lines(raw, codec, text)
        _check_encoding(file, encoding, raw, len(replaced))
    del raw, text
    # Without quote characters a physical line is a record and a comma is a separator:
    # split and count fields for every line at once.
    header_index = next((i for i, line in enumerate(lines) if line is None or line.strip()), None)
    if header_index is None:
        raise ConfigError(f"{file}: the file is empty (no header row)")
    if lines[header_index] is None:
        raise ConfigError(f"{file}: the header row is not valid {encoding}")
    header = [h.strip() for h in lines[header_index].rstrip("\r").split(",")]
    check_columns(file, header, required, source)
    header = unique_header(header)
    width = len(header)
    record_id_positions = _record_id_positions(header, record_id_column)
    body = pl.DataFrame({"line": pl.Series(lines[header_index + 1 :], dtype=pl.String)}).with_columns(
        line_index=pl.int_range(header_index + 1, len(lines), dtype=pl.Int64)
    )
    del lines
    body = (
        body.with_columns(
            undecodable=pl.col("line").is_null(),
            line=pl.col("line").str.strip_suffix("\r"),
        )
        # A line of separators alone (",,,") is a blank line too: Excel saves a cleared row so.
        # One regex pass (something other than a comma or a space): 3x faster than the strip
        # it replaced, which allocated every line again.
        .filter(pl.col("undecodable") | pl.col("line").str.contains(r"[^,\s]"))
        .with_columns(row_number=pl.int_range(1, pl.len() + 1, dtype=pl.Int32))
        .with_columns(fields=pl.col("line").str.split(","))
        .with_columns(width=pl.col("fields").list.len())
    )
    rejected: list[RejectedRow] = []
    undecodable = body.filter(pl.col("undecodable")).select("row_number", "line_index")
    for row_number, line_index in undecodable.iter_rows():
        cells = replaced.get(line_index, "").rstrip("\r").split(",")
        rejected.append(_undecodable("csv", row_number, line_index + 1, encoding,
                                     _aligned_id(cells, record_id_positions, width)))
    ragged = body.filter(~pl.col("undecodable") & (pl.col("width") != width))
    for row_number, line_index, found, fields in ragged.select("row_number", "line_index", "width", "fields").iter_rows():
        rejected.append(_wrong_width(row_number, line_index + 1, found, width,
                                     _aligned_id(fields, record_id_positions, width)))
    good = body.filter(~pl.col("undecodable") & (pl.col("width") == width))
    frame = good.select(
        *[pl.col("fields").list.get(i).str.strip_chars().replace("", None).alias(name) for i, name in enumerate(header)],
        pl.col("row_number"),
        # The file's line, 1-based: lines are the file split at LF, its byte order mark off.
        (pl.col("line_index") + 1).cast(pl.Int32).alias("file_row"),
    )
    rejected.sort(key=lambda r: r.row_number)
    return Extract(file=file, sha256=sha256, size_bytes=size, header=header, frame=frame, rejected=rejected)


def _check_encoding(file: Path, encoding: str, raw: bytes, bad_lines: int) -> None:
    """A file whose lines with non-ASCII bytes mostly fail to decode is in another encoding:
    a bad FILE, not bad rows. With an ASCII header (xsbh, xm …) it would otherwise pass the
    header check and lose every row with a Chinese character to the quarantine."""
    if bad_lines < 2:
        return
    non_ascii = 0
    # Line by line, stopping once the bad lines are clearly the few: on a good file that is
    # after a handful of lines, not a split of the whole file.
    for line in io.BytesIO(raw):
        non_ascii += not line.isascii()
        if non_ascii >= bad_lines * 2:
            return
    _refuse_other_encoding(file, encoding, bad_lines, non_ascii, "lines with Chinese text")


def _refuse_other_encoding(file: Path, encoding: str, bad_lines: int, lines: int, counted: str = "lines") -> None:
    """At least two bad lines, and more than half of the ``lines`` that could show it: the
    file is in another encoding than declared, not a file with a few bad rows."""
    if bad_lines >= 2 and bad_lines * 2 > lines:
        raise ConfigError(
            f"{file}: {bad_lines} of its {lines} {counted} are not valid {encoding}: "
            "the file is in another encoding (utf-8 or gb18030?); fix 'encoding' in the sources file"
        )


def _decode_physical_lines(raw: bytes, codec: str) -> tuple[list[str], set[int]]:
    """The file's lines (ends kept, split at LF, CR LF or CR as the csv module splits), each
    decoded on its own: a line with bad bytes is decoded with replacement characters and its
    index returned, so that one bad byte costs only the record holding it. Neither UTF-8 nor
    GB18030 uses 0x0A or 0x0D inside a multi-byte character."""
    if raw.startswith(b"\xef\xbb\xbf") and codec == "utf-8-sig":
        raw = raw[3:]
    pieces = re.split(rb"(\r\n|\r|\n)", raw)
    lines: list[str] = []
    bad: set[int] = set()
    for i in range(0, len(pieces), 2):
        line = pieces[i] + (pieces[i + 1] if i + 1 < len(pieces) else b"")
        if not line:
            continue
        try:
            lines.append(line.decode(codec))
        except UnicodeDecodeError:
            bad.add(len(lines))
            lines.append(line.decode(codec, errors="replace"))
    return lines, bad


def _blank(cells: list[str]) -> bool:
    """A blank line, or a row of empty fields: Excel saves a row cleared of its values (but
    not of its formatting) as ",,,", and read_xlsx skips that row in a workbook."""
    return all(not cell.strip() for cell in cells)


def _csv_records(lines: list[str], start: int, width: int) -> Iterator[tuple[list[str], int, int, bool]]:
    """(cells, first line, end line, stray quote) for every record from physical line `start` on.

    A record that runs over several lines and then has the wrong number of fields is not a
    field with a line break: a quote opened and never closed (or closed rows later), and the
    csv module read the following rows into one field. Only the line where it opened is the
    bad row (`stray quote` True, its cells read from that line alone); reading goes on at the
    next line, so no row after it is lost.
    """
    position = start
    while position < len(lines):
        reader = csv.reader(itertools.islice(lines, position, None))
        first = position
        try:
            for cells in reader:
                end = position + reader.line_num
                if end - first > 1 and len(cells) != width:
                    break
                yield cells, first, end, False
                first = end
            else:
                return
        except csv.Error:  # a field past the csv module's size limit: a quote that never closed
            pass
        alone = next(csv.reader([lines[first].rstrip("\r\n")]), [])
        yield alone, first, first + 1, True
        position = first + 1


def _stray_quote(row_number: int, file_row: int, found: int, width: int, record_id: str | None) -> RejectedRow:
    zh, en = row_place("csv", row_number, file_row)
    return RejectedRow(
        row_number,
        "wrong_column_count",
        f"{zh}有一个没有配对的引号(\")，该行无法分列(读出{found}列，表头有{width}列)，其后各行照常读取 "
        f"({en}: a quote that does not close; it reads as {found} fields, the header has {width})",
        record_id,
        file_row,
    )


def _read_quoted_csv(
    file: Path, lines: list[str], bad_lines: set[int], sha256: str, size: int, encoding: str,
    required: list[str], source: str, record_id_column: str | tuple[str, ...],
) -> Extract:
    header_index = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_index is None:
        raise ConfigError(f"{file}: the file is empty (no header row)")
    if header_index in bad_lines:
        raise ConfigError(f"{file}: the header row is not valid {encoding}")
    header_record = next(_csv_records(lines, header_index, 0), None)
    if header_record is None or header_record[3] or header_record[2] - header_record[1] > 1:
        raise ConfigError(f"{file}: the header row cannot be read as CSV (a quote in it does not close)")
    header = [h.strip() for h in header_record[0]]
    check_columns(file, header, required, source)
    header = unique_header(header)
    width = len(header)
    record_id_positions = _record_id_positions(header, record_id_column)

    def record_id_of(cells: list[str]) -> str | None:
        return _aligned_id(cells, record_id_positions, width)

    rows: list[list[str]] = []
    file_rows: list[int] = []  # the line each record starts on, 1-based (lines split as an editor splits them)
    rejected: list[RejectedRow] = []
    number = 0
    for cells, first, end, stray in _csv_records(lines, header_index + 1, width):
        if _blank(cells) and not stray and not bad_lines.intersection(range(first, end)):
            continue  # a blank line is not a data row
        number += 1
        if bad_lines.intersection(range(first, end)):
            rejected.append(_undecodable("csv", number, first + 1, encoding, record_id_of(cells)))
        elif stray:
            rejected.append(_stray_quote(number, first + 1, len(cells), width, record_id_of(cells)))
        elif len(cells) != width:
            rejected.append(_wrong_width(number, first + 1, len(cells), width, record_id_of(cells)))
        else:
            rows.append(cells)
            file_rows.append(first + 1)
    columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in header]
    return Extract(file=file, sha256=sha256, size_bytes=size, header=header,
                   frame=_frame(header, columns, _data_rows(number, rejected), file_rows), rejected=rejected)


# The workbook preflight opened for the header, with its first sheet parsed, kept for the
# read that follows it: calamine parses the whole sheet on opening (0.6 s for 82,000 rows),
# and a night reads each once. The workbook is kept too, so that a later sheet is taken
# from it without opening the file again.
_opened_sheet: dict[tuple[str, int, int], tuple[object, object, int, int]] = {}

# A later sheet that is not a continuation is a notes sheet (说明, 填表说明) only when it
# is small and no row of it looks like a record: at most this many filled cells, and no
# row with as many filled cells as NOTES_ROW_CELLS (or as the first sheet's header, when
# that is narrower). Anything else stops the night: its rows would be lost.
NOTES_MAX_CELLS = 100
NOTES_ROW_CELLS = 3


def file_identity(file: Path) -> tuple[str, int, int]:
    """Path, size and modification time: a file read earlier is the same file only if all agree."""
    stat = file.stat()
    return str(file.resolve()), stat.st_size, stat.st_mtime_ns


def _open_workbook(file: Path, keep: bool = False,
                   required: list[str] | None = None) -> tuple[object, object, int, int]:
    """The workbook, the sheet its data starts on (parsed), that sheet's index and the
    0-based row of its header (see `_data_sheet`)."""
    # calamine (Rust) reads a 20,000-row sheet in 0.6 s where openpyxl needs 18 s.
    from python_calamine import CalamineWorkbook

    key = file_identity(file)
    opened = _opened_sheet.pop(key, None)
    if opened is None:
        try:
            workbook = CalamineWorkbook.from_path(str(file))
            opened = (workbook, *_data_sheet(file, workbook, required))
        except ConfigError:
            raise
        except Exception as error:  # calamine raises its own error types for a broken file
            raise ConfigError(f"{file}: not a readable XLSX workbook ({type(error).__name__}: {error})") from None
    if keep:
        _opened_sheet.clear()
        _opened_sheet[key] = opened
    return opened


def _record_like_row(rows: list[list], start: int, row_cells: int) -> tuple[int, int] | None:
    """The first row (1-based, and its filled cells) from ``rows[start]`` on that a notes
    sheet may not hold: one with ``row_cells`` filled cells or more, or one past
    NOTES_MAX_CELLS filled cells in all; None for a notes sheet."""
    cells = 0
    for number, values in enumerate(rows[start:], start=start + 1):
        filled = _filled(values)
        cells += filled
        if filled >= row_cells or cells > NOTES_MAX_CELLS:
            return number, filled
    return None


# A notes sheet is short: read this many rows of a sheet to tell (one with more is data).
NOTES_MAX_ROWS = 1_000


def _data_sheet(file: Path, workbook, required: list[str] | None) -> tuple[object, int, int]:
    """The sheet the data starts on, its index and the 0-based row of its header.

    The first sheet, with its header on row 1, unless its first row lacks a mapped column
    and the sheet is empty or a short notes sheet (说明, 填表说明 put first): then the first
    later sheet whose first filled row holds every mapped column, provided every sheet
    before it is empty or notes too. A clerk's workbook that opens on its notes is not a
    bad file; anything else keeps the first sheet, whose header the night then refuses
    with the column it lacks."""
    first = workbook.get_sheet_by_index(0)
    if required is None or len(workbook.sheet_names) < 2:
        return first, 0, 0
    head = first.to_python(skip_empty_area=False, nrows=1)
    if head and all(column in _header_of(head[0]) for column in required):
        return first, 0, 0
    # As for a later notes sheet: a row as full as a record of the mapped columns is data.
    row_cells = max(1, min(NOTES_ROW_CELLS, len(required)))
    for index in range(len(workbook.sheet_names)):
        sheet = first if index == 0 else workbook.get_sheet_by_index(index)
        rows = sheet.to_python(skip_empty_area=False, nrows=NOTES_MAX_ROWS + 1)
        start = next((i for i, values in enumerate(rows) if _filled(values)), None)
        if start is None:
            continue  # an empty sheet
        if index > 0 and all(column in _header_of(rows[start]) for column in required):
            return sheet, index, start
        if len(rows) > NOTES_MAX_ROWS or _record_like_row(rows, start, row_cells) is not None:
            break  # data that is not the extract's: the first sheet's header is refused
    return first, 0, 0


def _header_of(values: list) -> list[str]:
    header = [cell_text(v) or "" for v in values]
    while header and header[-1] == "":
        header.pop()
    return header


def xlsx_header(file: Path, keep_open: bool = False, required: list[str] | None = None) -> list[str]:
    """The header of the sheet the data starts on (the first, or the first after notes sheets,
    given the mapped columns ``required``); ``keep_open``: keep the parsed sheet for a read
    about to follow."""
    _, sheet, _, header_row = _open_workbook(file, keep=keep_open, required=required)
    rows = sheet.to_python(skip_empty_area=False, nrows=header_row + 1)
    if len(rows) <= header_row:
        raise ConfigError(f"{file}: the first sheet is empty (no header row)")
    return _header_of(rows[header_row])


def _fill_merged_down(sheet, rows: list[list], header_row: int) -> None:
    """Give every row a merged cell covers the value of its first cell, for merges one column
    wide below the header row (``rows``: the sheet from A1, changed in place).

    Hand-kept rosters merge 户号 (or 户主, 家庭住址) down a household's members: Excel shows
    it on every member's row, but the file holds it in the first cell only, and the other
    members would be read without it. A merge across columns (a 合计 or notes line) is left
    as it is: spread, its text would fill a row's every column and look like a record."""
    for (top, left), (bottom, right) in getattr(sheet, "merged_cell_ranges", None) or ():
        if left != right or top <= header_row or top >= len(rows) or left >= len(rows[top]):
            continue
        value = rows[top][left]
        for row in rows[top + 1 : bottom + 1]:
            if left < len(row):
                row[left] = value


def _filled(values: list) -> int:
    return sum(cell_text(v) is not None for v in values)


def _later_sheet(file: Path, workbook, index: int, required: list[str], source: str,
                 width: int) -> tuple[list[str], list[list], int] | None:
    """A later sheet's header, its data rows and the Excel row of the first of them, when it
    continues the first sheet; None when it is empty or a notes sheet. A sheet whose rows
    would otherwise be lost stops the night."""
    name = workbook.sheet_names[index]
    try:
        sheet = workbook.get_sheet_by_index(index)
        rows = sheet.to_python(skip_empty_area=False)
    except Exception as error:  # calamine's own error types
        raise ConfigError(
            f"{file}: sheet '{name}' cannot be read ({type(error).__name__}: {error})"
        ) from None
    start = next((i for i, values in enumerate(rows) if _filled(values)), None)
    if start is None:
        return None  # an empty sheet
    header = _header_of(rows[start])
    missing = [column for column in required if column not in header]
    if not missing:
        _refuse_repeated_mapped_columns(file, header, required, source, where=f"sheet '{name}': ")
        _fill_merged_down(sheet, rows, start)
        # rows[0] is row 1: calamine pads a sheet whose cells start lower down (or right of
        # column A) from A1 when asked not to skip the empty area.
        return header, rows[start + 1 :], start + 2
    if len(missing) < len(required):
        present = next(column for column in required if column in header)
        raise ConfigError(
            f"{file}: sheet '{name}' has the mapped column '{present}' but not '{missing[0]}' (mapped for source "
            f"'{source}') in its first row {start + 1}, so its rows cannot be read; give it the first sheet's "
            "header row, or move it out of the workbook"
        )
    row_cells = max(1, min(NOTES_ROW_CELLS, width))
    record_like = _record_like_row(rows, start, row_cells)
    if record_like is not None:
        number, filled = record_like
        raise ConfigError(
            f"{file}: sheet '{name}' holds data (row {number} has {filled} filled cells) but its first row "
            f"lacks column '{missing[0]}' (mapped for source '{source}'), so its rows cannot be read; give it "
            "the first sheet's header row, or move it out of the workbook (only a short notes sheet, "
            f"at most {NOTES_MAX_CELLS} cells and no row of {row_cells} or more, is left aside)"
        )
    return None  # a notes sheet: a few lines of text, no record


def _append_rows(rows: list[list], positions: list[int | None], columns: list[list[str | None]],
                 excel_rows: list[int], first_excel_row: int) -> None:
    """Append the non-empty ``rows`` (``rows[0]`` is the sheet's Excel row ``first_excel_row``)
    to ``columns``, and their Excel rows to ``excel_rows`` (the data rows are counted there)."""
    width = len(positions)
    straight = positions == list(range(width))
    for excel_row, values in enumerate(rows, start=first_excel_row):
        if straight:
            texts = [cell_text(v) for v in values[:width]]
        else:
            texts = [cell_text(values[p]) if p is not None and p < len(values) else None for p in positions]
        if all(t is None for t in texts):
            continue  # an empty row is not a data row
        excel_rows.append(excel_row)
        texts.extend([None] * (width - len(texts)))
        for column, text in zip(columns, texts, strict=True):
            column.append(text)


def read_xlsx(file: Path, required: list[str], source: str) -> Extract:
    """The first sheet (or the first after notes sheets put first, see `_data_sheet`), and
    every later sheet that continues it (its first filled row holds
    every mapped column: an export split over sheets at Excel's row limit), in sheet order;
    row numbers count the data rows of the whole workbook. A later sheet that is empty or a
    short notes sheet (说明) is left aside; any other stops the night (see `_later_sheet`)."""
    workbook, first, first_index, header_row = _open_workbook(file, required=required)
    rows = first.to_python(skip_empty_area=False)
    if len(rows) <= header_row:
        raise ConfigError(f"{file}: the first sheet is empty (no header row)")
    given = _header_of(rows[header_row])
    check_columns(file, given, required, source)
    _fill_merged_down(first, rows, header_row)
    header = unique_header(given)
    width = len(header)
    columns: list[list[str | None]] = [[] for _ in header]
    excel_rows: list[int] = []  # each data row's Excel row in its own sheet (the header is row 1)
    _append_rows(rows[header_row + 1 :], list(range(width)), columns, excel_rows, header_row + 2)
    del rows
    names = workbook.sheet_names
    sheets = [(names[first_index], 1, len(excel_rows))]
    for index in range(first_index + 1, len(names)):
        later = _later_sheet(file, workbook, index, required, source, width)
        if later is None:
            continue
        sheet_header, body, first_excel_row = later
        if sheet_header[:width] == given:
            positions: list[int | None] = list(range(width))
        else:  # the same columns in another order: by name (a column it lacks is empty)
            positions = [sheet_header.index(name) if name and name in sheet_header else None for name in given]
        before = len(excel_rows)
        _append_rows(body, positions, columns, excel_rows, first_excel_row)
        sheets.append((names[index], before + 1, len(excel_rows)))
    sha256, size = file_digest(file)
    return Extract(file=file, sha256=sha256, size_bytes=size, header=header,
                   frame=_frame(header, columns, range(1, len(excel_rows) + 1), excel_rows),
                   # after notes sheets, the sheet is named too: the workbook opens on another
                   sheets=sheets if len(sheets) > 1 or first_index > 0 else [])


def check_xlsx_sheets(file: Path, required: list[str], source: str) -> None:
    """What `read_xlsx` would refuse in a workbook's later sheets, without reading any row
    into the night: an unreadable sheet, or one with data that does not continue the first.
    A workbook of one sheet costs nothing here (preflight parsed that sheet already)."""
    from python_calamine import CalamineWorkbook

    kept = _opened_sheet.get(file_identity(file))
    try:
        workbook = kept[0] if kept is not None else CalamineWorkbook.from_path(str(file))
        if len(workbook.sheet_names) < 2:
            return
        first, first_index, header_row = kept[1:] if kept is not None else _data_sheet(file, workbook, required)
    except ConfigError:
        raise
    except Exception as error:  # calamine raises its own error types for a broken file
        raise ConfigError(f"{file}: not a readable XLSX workbook ({type(error).__name__}: {error})") from None
    rows = first.to_python(skip_empty_area=False, nrows=header_row + 1)
    width = len(_header_of(rows[header_row])) if len(rows) > header_row else 0
    for index in range(first_index + 1, len(workbook.sheet_names)):
        _later_sheet(file, workbook, index, required, source, width)


def _timestamp_text(name: str, values: pa.ChunkedArray) -> pl.Series | None:
    """A timestamp column as cell_text writes each value, for the whole column at once
    (1 s → 0.05 s for 200,000 rows); None where only cell_text knows the answer."""
    kind = values.type
    if not pa.types.is_timestamp(kind) or kind.tz is not None or kind.unit not in ("s", "ms", "us"):
        return None
    stamps = pl.Series(name, values)
    years = stamps.dt.year()
    if stamps.null_count() < len(stamps) and (years.min() < 1000 or years.max() > 9999):
        return None  # Python writes such years with padding polars does not
    micro = stamps.dt.microsecond()
    frame = pl.DataFrame({"stamp": stamps, "micro": micro})
    text = frame.select(
        pl.when(pl.col("stamp").dt.time() == pl.lit(dt.time(0, 0)))
        .then(pl.col("stamp").dt.strftime("%Y-%m-%d"))
        .when(pl.col("micro") == 0)
        .then(pl.col("stamp").dt.strftime("%Y-%m-%d %H:%M:%S"))
        .otherwise(
            pl.concat_str(
                pl.col("stamp").dt.strftime("%Y-%m-%d %H:%M:%S"),
                pl.lit("."),
                pl.col("micro").cast(pl.String).str.zfill(6),
            )
        )
        .alias(name)
    )
    return text.to_series()


def check_parquet_pages(file: Path) -> None:
    """Decode every page of every row group, one row group at a time, as `read_parquet`
    would: a corrupt page in the middle of the file fails here, before the night writes."""
    try:
        parquet = pq.ParquetFile(file)
        for group in range(parquet.num_row_groups):
            parquet.read_row_group(group)
    except (pa.ArrowException, OSError) as error:
        raise ConfigError(f"{file}: not a readable Parquet file ({error})") from None


def read_parquet(file: Path, required: list[str], source: str) -> Extract:
    try:
        # ParquetFile, not read_table: the dataset reader refuses a file with a repeated column name.
        table = pq.ParquetFile(file).read()
    except (pa.ArrowException, OSError) as error:
        raise ConfigError(f"{file}: not a readable Parquet file ({error})") from None
    check_columns(file, table.column_names, required, source)
    header = unique_header(table.column_names)
    columns: list[pl.Series | list[str | None]] = []
    undecodable: set[int] = set()  # 1-based rows with a binary cell that is not UTF-8 text
    for position, column in enumerate(header):
        values = table.column(position)
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            columns.append(pl.Series(column, values, dtype=pl.String))
        elif pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
            # Text written without Parquet's UTF8 annotation (older Hive/Spark exports): the
            # cell's text, not Python's b'\xe5…' spelling of its bytes.
            texts: list[str | None] = []
            for row, value in enumerate(values.to_pylist(), start=1):
                try:
                    texts.append(cell_text(value.decode("utf-8")) if value is not None else None)
                except UnicodeDecodeError:
                    undecodable.add(row)
                    texts.append(None)
            columns.append(texts)
        elif pa.types.is_date(values.type) or pa.types.is_integer(values.type):
            # ISO dates and plain integers: the same text cell_text gives, for the whole column at once.
            columns.append(pl.Series(column, values).cast(pl.String))
        elif (timestamps := _timestamp_text(column, values)) is not None:
            columns.append(timestamps)
        else:
            # Dates, numbers and the like: one cell at a time, as the other formats do.
            columns.append([cell_text(v) for v in values.to_pylist()])
    sha256, size = file_digest(file)
    # A Parquet file has no header: its row is the data row (see `row_place`).
    rows = range(1, table.num_rows + 1)
    frame = _frame(header, columns, rows, rows)
    rejected = [_undecodable("parquet", row, row, "utf-8") for row in sorted(undecodable)]
    if rejected:
        frame = frame.filter(~pl.col("row_number").is_in(sorted(undecodable)))
    return Extract(file=file, sha256=sha256, size_bytes=size, header=header, frame=frame, rejected=rejected)


def no_json_object_reason(file: Path, encoding: str, lines: int, undecodable: int) -> str:
    """Why a JSON lines file of ``lines`` lines, ``undecodable`` of them not valid in its
    encoding, holds no record at all: the one line a steward reads."""
    if lines == 0:
        return f"{file}: the file is empty (no JSON line)"
    if undecodable == lines:
        return f"{file}: none of its {lines} lines is valid {encoding}: fix 'encoding' in the sources file"
    return f"{file}: none of its {lines} lines is a JSON object (one record per line is expected)"


def _json_record_id(text: str, record_id_keys: tuple[str, ...]) -> str | None:
    """An undecodable JSON line's record id, where the line (its bad bytes replaced) still
    parses to an object and each of its record-id values decoded: a clerk finds the record
    by it. Several keys are joined with one space, empty parts skipped, as an accepted
    row's are; a part that did not decode leaves the id empty (the rest alone would name
    another record)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(value, dict):
        return None
    parts = []
    for key in record_id_keys:
        part = cell_text(value.get(key))
        if part is not None and "\ufffd" in part:
            return None
        if part is not None:
            parts.append(part)
    return " ".join(parts) or None


def read_jsonl(file: Path, encoding: str, required: list[str], source: str,
               record_id_keys: str | tuple[str, ...]) -> Extract:
    """One JSON lines extract; ``record_id_keys``: the record id's key, or its keys in order
    (they name a line whose bytes do not decode, where they still can)."""
    codec = python_encoding(encoding)
    keys_of_id = (record_id_keys,) if isinstance(record_id_keys, str) else tuple(record_id_keys)
    objects: list[dict] = []
    file_rows: list[int] = []  # each object's line in the file, 1-based: blank lines counted
    rejected: list[RejectedRow] = []
    keys: dict[str, None] = {}
    row_number = 0
    with file.open("rb") as handle:
        for index, line in enumerate(handle):
            if index == 0:
                line = without_bom(line, encoding)
            if not line.strip():
                continue
            row_number += 1
            try:
                value = json.loads(line.decode(codec))
            except UnicodeDecodeError:
                record_id = _json_record_id(line.decode(codec, errors="replace"), keys_of_id)
                rejected.append(_undecodable("jsonl", row_number, index + 1, encoding, record_id))
                continue
            except json.JSONDecodeError as error:
                zh, en = row_place("jsonl", row_number, index + 1)
                rejected.append(
                    RejectedRow(
                        row_number,
                        "unreadable_row",
                        f"{zh}不是完整的 JSON 记录，可能被截断 ({en}: not valid JSON: {error.msg})",
                        file_row=index + 1,
                    )
                )
                continue
            if not isinstance(value, dict):
                zh, en = row_place("jsonl", row_number, index + 1)
                rejected.append(
                    RejectedRow(
                        row_number,
                        "unreadable_row",
                        f"{zh}不是一条记录(JSON 对象) ({en}: a JSON {type(value).__name__}, not an object)",
                        file_row=index + 1,
                    )
                )
                continue
            for key in value:
                keys.setdefault(key, None)
            objects.append(value)
            file_rows.append(index + 1)
    header = list(keys)
    undecodable = sum(r.reason_code == "undecodable_bytes" for r in rejected)
    if not objects:
        raise ConfigError(no_json_object_reason(file, encoding, row_number, undecodable))
    _refuse_other_encoding(file, encoding, undecodable, len(objects) + len(rejected))
    check_columns(file, header, required, source)
    columns = [[cell_text(value.get(column)) for value in objects] for column in header]
    sha256, size = file_digest(file)
    frame = _frame(header, columns, _data_rows(row_number, rejected), file_rows)
    return Extract(file=file, sha256=sha256, size_bytes=size, header=header, frame=frame, rejected=rejected)
