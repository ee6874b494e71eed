"""The canonical person fields of the contract's sources file (CONTRACT.md section 2)."""

from __future__ import annotations

CANONICAL_FIELDS: tuple[str, ...] = (
    "record_id",
    "name",
    "id_number",
    "sex",
    "birth_date",
    "ethnicity",
    "phone",
    "hukou_address",
    "hukou_region",
    "residence_address",
    "residence_region",
    "household_id",
    "relation_to_head",
    "house_id",
    "employer",
    "registered_at",
    "updated_at",
)

# Every canonical field but the record's key: what completeness (人不漏项) is measured on.
PERSON_FIELDS: tuple[str, ...] = CANONICAL_FIELDS[1:]

# The raw copies standardize returns beside the standard values (`<field>_raw`), by the
# raw_records column each copies. int_persons_standardized does not store them: the view
# RAW_VALUES_VIEW (sql/intermediate/int_persons_raw_values.sql) shows them by record_key.
RAW_VALUE_COLUMNS: dict[str, str] = {
    f"{field}_raw": field
    for field in (
        "name", "id_number", "birth_date", "sex", "ethnicity", "phone", "hukou_address", "residence_address",
        "hukou_region", "residence_region", "relation_to_head", "registered_at", "updated_at",
    )
}
# Where each record came from (its file, row, the file's digest and the night that loaded
# it): raw_records' columns too, shown by the same view rather than stored again.
RECORD_PROVENANCE_COLUMNS: tuple[str, ...] = ("file", "row_number", "file_sha256", "load_batch")
RAW_VALUES_VIEW = "int_persons_raw_values"
# The quarantine table's column, beside the contract's, holding a rejected row's record id
# as the department's row held it: `record_id` is masked where it is an identity number
# (quarantine.parquet is published city-wide), and only the department's own report shows
# its own value in full. Publish leaves it out.
QUARANTINE_OWN_RECORD_ID = "own_record_id"
# The quarantine table's column naming the sheet of a rejected row of a workbook whose data
# runs over several sheets (empty for every other row): the row the report's 文件中的行号
# names is that sheet's Excel row. Publish leaves it out (the reason names the sheet too).
QUARANTINE_SHEET = "sheet"

# Words that fill a name cell when the clerk had no name (or was testing the form):
# standardization leaves such a name empty (linkage.names), and ingest's no_name_or_id rule
# (sql/staging/stg_ingest_rows_rejected.sql) counts it as empty, so that a row that names
# nobody is quarantined rather than published as a person of its own.
NAME_PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "无", "无名", "无名氏", "不详", "未知", "不明", "待定", "待查", "暂无", "空", "测试", "某某", "某",
        "NA", "N/A", "NULL", "NONE", "NIL", "UNKNOWN", "TEST", "X", "XX", "XXX", "NAN", "姓名",
    }
)
