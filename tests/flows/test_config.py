"""The sources file: what parses, and the one-line errors that stop a night."""

from pathlib import Path

import pytest

from flows.config import ConfigError, load_sources

GOOD = """
sources:
  - name: police_hukou
    department: 公安局户政科
    kind: hukou
    path: extracts/police_*.csv
    format: csv
    encoding: gb18030
    columns:
      record_id: 记录编号
      name: [xing, ming]
"""


def write(tmp_path: Path, text: str, files: tuple[str, ...] = ("extracts/police_1.csv", "extracts/police_2.csv")) -> Path:
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("记录编号\n", encoding="utf-8")
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_renamed_from_is_read(tmp_path: Path) -> None:
    config = load_sources(write(tmp_path, GOOD.replace("kind: hukou", "kind: hukou\n    renamed_from: hukou_2019")))
    assert config.sources[0].renamed_from == "hukou_2019"
    assert load_sources(write(tmp_path, GOOD)).sources[0].renamed_from is None


def test_glob_and_list_mapping_resolve(tmp_path: Path) -> None:
    config = load_sources(write(tmp_path, GOOD))
    (source,) = config.sources
    assert [f.name for f in source.files] == ["police_1.csv", "police_2.csv"]
    assert source.columns["name"] == ("xing", "ming")
    assert source.kind == "hukou" and source.encoding == "gb18030"
    assert config.relative(source.files[0]) == "extracts/police_1.csv"


def test_defaults_kind_generic_and_format_from_suffix(tmp_path: Path) -> None:
    text = "sources:\n  - {name: a, department: 卫健委, path: x.jsonl, columns: {record_id: id, id_number: sfz}}\n"
    (source,) = load_sources(write(tmp_path, text, files=("x.jsonl",))).sources
    assert (source.kind, source.format, source.encoding) == ("generic", "jsonl", "utf-8")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sources: [\n", "does not parse as YAML at line"),
        ("other: 1\n", "must have a non-empty 'sources:' list"),
        (GOOD.replace("police_hukou", "Police-Hukou"), "'name' must match [a-z0-9_]+"),
        (GOOD.replace("kind: hukou", "kind: census"), "kind 'census' is not one of"),
        (GOOD.replace("format: csv", "format: xls"), "format 'xls' is not one of"),
        (GOOD.replace("encoding: gb18030", "encoding: klingon"), "unknown encoding 'klingon'"),
        (GOOD.replace("encoding: gb18030", "encoding: utf-16"), "encoding 'utf-16' is not supported"),
        (GOOD.replace("name: [xing, ming]", "nickname: 昵称"), "'nickname' is not a canonical field"),
        (GOOD.replace("record_id: 记录编号", "sex: 性别"), "must name a 'record_id' column"),
        (GOOD.replace("name: [xing, ming]", "sex: 性别"), "needs at least 'name' or 'id_number'"),
        (GOOD.replace("police_*.csv", "nothing_*.csv"), "no file matches extracts/nothing_*.csv"),
        (GOOD.replace("police_*.csv", "missing.csv"), "missing.csv: file not found"),
        (GOOD + GOOD.split("sources:")[1], "source 'police_hukou' is named twice"),
        # A misspelt key was ignored: the household register read as a generic list (no
        # 人户分离, no 一人多户), or a gb18030 file read as utf-8, and the night published.
        (GOOD.replace("kind: hukou", "knd: hukou"), "source 'police_hukou': unknown key 'knd' (did you mean 'kind'?"),
        (GOOD.replace("encoding: gb18030", "encodng: gb18030"), "unknown key 'encodng' (did you mean 'encoding'?"),
        (GOOD.replace("format: csv", "format: csv\n    sheet: 2"), "unknown key 'sheet'; a source has only name,"),
        # renamed_from: the earlier name of a source, gone from the file, claimed once.
        (GOOD.replace("kind: hukou", "kind: hukou\n    renamed_from: police_hukou"),
         "'renamed_from' must be the source's earlier name"),
        (GOOD.replace("kind: hukou", "kind: hukou\n    renamed_from: Old-Name"),
         "'renamed_from' must be the source's earlier name"),
        (GOOD.replace("kind: hukou", "kind: hukou\n    renamed_from: census")
         + GOOD.split("sources:")[1].replace("police_hukou", "census"),
         "renamed_from 'census' is still the name of a source in this file"),
        (GOOD.replace("kind: hukou", "kind: hukou\n    renamed_from: old")
         + GOOD.split("sources:")[1].replace("police_hukou", "other").replace("kind: hukou", "kind: hukou\n    renamed_from: old"),
         "sources 'police_hukou' and 'other' are both renamed_from 'old'"),
    ],
)
def test_fatal_errors_are_one_line_naming_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_sources(path)
    text_of_error = str(raised.value)
    assert message in text_of_error
    assert "\n" not in text_of_error
    assert str(tmp_path) in text_of_error


def test_missing_sources_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sources file not found"):
        load_sources(tmp_path / "nope.yaml")


def test_a_folder_given_as_the_sources_file_is_named_as_a_folder(tmp_path: Path) -> None:
    # A steward who passes the city folder was told "sources file not found" about a folder that exists.
    with pytest.raises(ConfigError, match="--sources names a folder; give the sources file"):
        load_sources(tmp_path)


@pytest.mark.parametrize(
    ("first", "second", "folder"),
    [("公安局/户政科", "公安局_户政科", "公安局_户政科"), ("Civil Affairs", "civil affairs", "civil affairs")],
)
def test_departments_that_would_share_a_report_folder_are_refused(
    tmp_path: Path, first: str, second: str, folder: str
) -> None:
    # Before, the second department's report was written over the first's in one folder.
    text = (
        "sources:\n"
        f"  - {{name: a, department: '{first}', path: a.csv, columns: {{record_id: id, name: xm}}}}\n"
        f"  - {{name: b, department: '{second}', path: b.csv, columns: {{record_id: id, name: xm}}}}\n"
        f"  - {{name: c, department: '{first}', path: c.csv, columns: {{record_id: id, name: xm}}}}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_sources(write(tmp_path, text, files=("a.csv", "b.csv", "c.csv")))
    message = str(error.value)
    assert f"departments '{first}' and '{second}' would share the report folder reports/{folder}" in message
    assert "\n" not in message and "sources.yaml" in message
    # One department over several sources is one folder, not a clash.
    same = text.replace(f"department: '{second}'", f"department: '{first}'")
    assert len(load_sources(write(tmp_path, same, files=("a.csv", "b.csv", "c.csv"))).sources) == 3
