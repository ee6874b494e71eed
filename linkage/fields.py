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
