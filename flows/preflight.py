"""Check a night's inputs before anything starts: the sources file parses, every file
exists, and every mapped column is in its extract's header.

This runs in the CLI before Prefect's server is started, so a steward learns of a
renamed column in a second, with one line naming the file and the column.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from flows.config import ConfigError, Source, SourcesConfig, load_sources
from flows.readers import check_columns, no_json_object_reason, python_encoding, without_bom, xlsx_header

# JSON lines have no header: read until every mapped key has been seen, at most this far.
_JSONL_SCAN_LINES = 200_000


def _csv_header(file: Path, encoding: str) -> list[str]:
    codec = python_encoding(encoding)
    text = ""
    with file.open("rb") as handle:
        # Blank lines before the header are skipped, as ingest skips them (`read_csv`).
        for number, line in enumerate(iter(handle.readline, b"")):
            try:
                # A BOM stands before the first line only.
                text = (without_bom(line, encoding) if number == 0 else line).decode(codec)
            except UnicodeDecodeError:
                raise ConfigError(f"{file}: the header row is not valid {encoding}") from None
            if text.strip():
                break
    if not text.strip():
        raise ConfigError(f"{file}: the file is empty (no header row)")
    try:
        # newline="": a file whose lines end in CR alone is read as the csv module reads it at ingest.
        cells = next(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise ConfigError(f"{file}: the header row cannot be read as CSV ({error})") from None
    if any("\n" in cell or "\r" in cell for cell in cells):
        # A quote that does not close on the header's own line: ingest refuses it too.
        raise ConfigError(f"{file}: the header row cannot be read as CSV (a quote in it does not close)")
    return [h.strip() for h in cells]


def _parquet_header(file: Path) -> list[str]:
    try:
        return list(pq.read_schema(file).names)
    except (pa.ArrowException, OSError) as error:
        raise ConfigError(f"{file}: not a readable Parquet file ({error})") from None


def _jsonl_keys(file: Path, encoding: str, required: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    missing = set(required)
    lines = undecodable = objects = 0
    with file.open("rb") as handle:
        for count, line in enumerate(handle):
            if count >= _JSONL_SCAN_LINES or not missing:
                break
            if count == 0:
                line = without_bom(line, encoding)
            if not line.strip():
                continue
            lines += 1
            try:
                value = json.loads(line.decode(python_encoding(encoding)))
            except UnicodeDecodeError:
                undecodable += 1
                continue  # a broken line is the row's problem, quarantined at ingest
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                objects += 1
                for key in value:
                    seen.setdefault(key, None)
                missing -= value.keys()
    if not objects:
        raise ConfigError(no_json_object_reason(file, encoding, lines, undecodable))
    return list(seen)


def check_file_header(source: Source, file: Path, keep_open: bool = False) -> None:
    """The file opens and its header (a JSON lines file: its keys) holds every mapped column."""
    required = source.mapped_columns
    if source.format == "csv":
        header = _csv_header(file, source.encoding)
    elif source.format == "xlsx":
        header = xlsx_header(file, keep_open=keep_open, required=required)
    elif source.format == "parquet":
        header = _parquet_header(file)
    else:
        header = _jsonl_keys(file, source.encoding, required)
    check_columns(file, header, required, source.name)


def check_source_files(source: Source, keep_open: bool = False) -> None:
    for file in source.files:
        check_file_header(source, file, keep_open=keep_open)


def preflight(sources_file: Path, reading_next: bool = False) -> SourcesConfig:
    """The checked sources file; ``reading_next``: the extracts are read right after, so a
    workbook parsed for its header is kept for that read instead of parsed twice."""
    config = load_sources(Path(sources_file))
    for source in config.sources:
        check_source_files(source, keep_open=reading_next)
    return config
