"""The sources file (CONTRACT.md section 2): parse, check, and resolve each source's files.

Every problem found here is fatal for the night and raised as `ConfigError` with one
line naming the file and, where there is one, the source and the column: a steward
reads it on stderr at 2 a.m. and must know what to fix without opening the code.
"""

from __future__ import annotations

import difflib
import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from linkage.fields import CANONICAL_FIELDS

SOURCE_KINDS: tuple[str, ...] = ("hukou", "residence", "roster", "rental", "generic")
FORMATS: tuple[str, ...] = ("csv", "xlsx", "parquet", "jsonl")
_SOURCE_NAME = re.compile(r"^[a-z0-9_]+$")
SOURCE_KEYS: tuple[str, ...] = (
    "name", "department", "kind", "path", "format", "encoding", "columns", "renamed_from",
)


class ConfigError(Exception):
    """A sources file or extract that stops the night before anything is written."""


@dataclass(frozen=True)
class Source:
    name: str
    department: str
    kind: str
    path: str
    format: str
    encoding: str
    # canonical field -> the extract's own column names (one, or several joined by a space)
    columns: dict[str, tuple[str, ...]]
    files: tuple[Path, ...] = field(default=())
    # The source's earlier name, when a steward renamed it: its records keep their person ids.
    renamed_from: str | None = None

    @property
    def mapped_columns(self) -> list[str]:
        return sorted({column for parts in self.columns.values() for column in parts})


@dataclass(frozen=True)
class SourcesConfig:
    path: Path
    sources: tuple[Source, ...]

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def relative(self, file: Path) -> str:
        try:
            return file.resolve().relative_to(self.base_dir.resolve()).as_posix()
        except ValueError:
            return file.resolve().as_posix()


def _fail(path: Path, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def _column_list(path: Path, source: str, canonical: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip():
        return (value.strip(),)
    if isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
        return tuple(v.strip() for v in value)
    raise _fail(path, f"source '{source}': column mapping for '{canonical}' must be a column name or a list of names")


def _parse_source(path: Path, index: int, entry: object, seen: set[str]) -> Source:
    if not isinstance(entry, dict):
        raise _fail(path, f"sources[{index}] is not a mapping")
    name = entry.get("name")
    if not isinstance(name, str) or not _SOURCE_NAME.match(name):
        raise _fail(path, f"sources[{index}]: 'name' must match [a-z0-9_]+, got {name!r}")
    if name in seen:
        raise _fail(path, f"source '{name}' is named twice")
    seen.add(name)
    for key in entry:
        if key not in SOURCE_KEYS:
            # A misspelt key would be ignored and its default taken: `knd: hukou` reads the
            # household register as a generic list, and the night publishes without 人户分离.
            close = difflib.get_close_matches(str(key), SOURCE_KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise _fail(path, f"source '{name}': unknown key '{key}'{hint}; a source has only {', '.join(SOURCE_KEYS)}")
    department = entry.get("department")
    if not isinstance(department, str) or not department.strip():
        raise _fail(path, f"source '{name}': 'department' is required")
    kind = entry.get("kind", "generic")
    if kind not in SOURCE_KINDS:
        raise _fail(path, f"source '{name}': kind {kind!r} is not one of {', '.join(SOURCE_KINDS)}")
    source_path = entry.get("path")
    if not isinstance(source_path, str) or not source_path.strip():
        raise _fail(path, f"source '{name}': 'path' is required")
    file_format = entry.get("format")
    if file_format is None:
        file_format = Path(source_path).suffix.lstrip(".").lower()
    if file_format not in FORMATS:
        raise _fail(path, f"source '{name}': format {file_format!r} is not one of {', '.join(FORMATS)}")
    encoding = entry.get("encoding", "utf-8")
    if not isinstance(encoding, str):
        raise _fail(path, f"source '{name}': 'encoding' must be text")
    try:
        ascii_compatible = '\n,"renhu'.encode(encoding) == b'\n,"renhu'
    except LookupError:
        raise _fail(path, f"source '{name}': unknown encoding {encoding!r}") from None
    if not ascii_compatible:
        # The readers find lines, commas and quotes as ASCII bytes: UTF-16/32 files would be
        # refused row by row ("the header row is not valid utf-16") though they are valid.
        raise _fail(path, f"source '{name}': encoding {encoding!r} is not supported; "
                          "save the extract as utf-8 or gb18030")
    raw_columns = entry.get("columns")
    if not isinstance(raw_columns, dict) or not raw_columns:
        raise _fail(path, f"source '{name}': 'columns' must map canonical fields to the extract's columns")
    columns: dict[str, tuple[str, ...]] = {}
    for canonical, value in raw_columns.items():
        if canonical not in CANONICAL_FIELDS:
            raise _fail(path, f"source '{name}': '{canonical}' is not a canonical field ({', '.join(CANONICAL_FIELDS)})")
        columns[canonical] = _column_list(path, name, canonical, value)
    if "record_id" not in columns:
        raise _fail(path, f"source '{name}': the mapping must name a 'record_id' column")
    shared = [c for c in columns["record_id"] if c in columns.get("id_number", ())]
    if shared:
        # The record id is published city-wide (entity_map, quarantine, household findings);
        # an identity number may appear in full only in its own department's report.
        raise _fail(path, f"source '{name}': record_id is mapped to '{shared[0]}', the id_number column: record ids "
                          "are published and identity numbers may not be; map the department's own record number")
    if "name" not in columns and "id_number" not in columns:
        raise _fail(path, f"source '{name}': the mapping needs at least 'name' or 'id_number'")
    renamed_from = entry.get("renamed_from")
    if renamed_from is not None and (
        not isinstance(renamed_from, str) or not _SOURCE_NAME.match(renamed_from) or renamed_from == name
    ):
        raise _fail(path, f"source '{name}': 'renamed_from' must be the source's earlier name ([a-z0-9_]+, "
                          f"not its name now), got {renamed_from!r}")
    return Source(
        name=name,
        department=department.strip(),
        kind=kind,
        path=source_path.strip(),
        format=file_format,
        encoding=encoding,
        columns=columns,
        renamed_from=renamed_from,
    )


def _resolve_files(config_path: Path, source: Source) -> tuple[Path, ...]:
    pattern = source.path if Path(source.path).is_absolute() else str(config_path.parent / source.path)
    if glob.has_magic(pattern):
        matches = tuple(sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file()))
        if not matches:
            raise _fail(config_path, f"source '{source.name}': no file matches {source.path}")
        return matches
    file = Path(pattern)
    if not file.is_file():
        raise ConfigError(f"{file}: file not found (source '{source.name}' in {config_path})")
    return (file,)


def load_sources(path: Path) -> SourcesConfig:
    """Parse and check a sources file; every listed file must exist."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: --sources names a folder; give the sources file (YAML) in it")
    if not path.is_file():
        raise ConfigError(f"{path}: sources file not found")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise _fail(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise _fail(path, f"does not parse as YAML{where}: {problem}") from None
    if not isinstance(document, dict) or not isinstance(document.get("sources"), list) or not document["sources"]:
        raise _fail(path, "must have a non-empty 'sources:' list")
    seen: set[str] = set()
    sources = [_parse_source(path, i, entry, seen) for i, entry in enumerate(document["sources"])]
    earlier: dict[str, str] = {}
    for source in sources:
        if source.renamed_from is None:
            continue
        if source.renamed_from in seen:
            raise _fail(path, f"source '{source.name}': renamed_from '{source.renamed_from}' is still the name of "
                              "a source in this file; a renamed source's old name must be gone")
        if source.renamed_from in earlier:
            raise _fail(path, f"sources '{earlier[source.renamed_from]}' and '{source.name}' are both "
                              f"renamed_from '{source.renamed_from}'")
        earlier[source.renamed_from] = source.name
    _check_report_folders(path, sources)
    resolved = tuple(
        Source(**{**source.__dict__, "files": _resolve_files(path, source)}) for source in sources
    )
    return SourcesConfig(path=path, sources=resolved)


# Characters no file system allows in a folder name.
_UNSAFE_PATH = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


def department_folder(department: str) -> str:
    """The department's name as its report folder's name, with characters no file system allows replaced."""
    name = _UNSAFE_PATH.sub("_", department).strip().strip(".")
    return name or "_"


def _check_report_folders(path: Path, sources: list[Source]) -> None:
    """Two departments whose names make one report folder (公安局/户政科 and 公安局_户政科; or
    names differing in case only, one folder where the file system ignores case) would write
    one report over the other: refused before the night."""
    folders: dict[str, str] = {}
    for source in sources:
        folder = department_folder(source.department)
        other = folders.setdefault(folder.casefold(), source.department)
        if other != source.department:
            raise _fail(path, f"departments '{other}' and '{source.department}' would share the report folder "
                              f"reports/{folder}; name them apart")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_paths(out_dir: Path, db_path: Path | None = None) -> None:
    """Raise ConfigError, naming the path, when the night could not write its output there.

    Checked before the run starts, so a mistyped ``--out`` or ``--db`` is one line at exit 2,
    not a traceback from the middle of the flow. Creates nothing.
    """
    db = db_path if db_path is not None else out_dir / "renhu.duckdb"
    places = [(out_dir, "--out", True), (db, "--db", False)]
    for path, option, is_folder in places:
        if path.exists():
            if is_folder and not path.is_dir():
                raise ConfigError(f"{path}: {option} must be a folder, and this is a file")
            if not is_folder and path.is_dir():
                raise ConfigError(f"{path}: {option} must be a DuckDB file, and this is a folder")
        existing = _nearest_existing(path if is_folder else path.parent)
        if not existing.is_dir():
            raise ConfigError(f"{path}: {option} cannot be created: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"{path}: {option} cannot be written: no write permission on {existing}")
        if path.exists() and not os.access(path, os.W_OK):
            raise ConfigError(f"{path}: {option} cannot be written: no write permission")
