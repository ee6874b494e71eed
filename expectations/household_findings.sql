-- household_findings suite frame: each published finding beside the accepted record it
-- names as evidence. Grain: one row per household_findings row.
with findings as (
    select kind, person_id, source, record_id, detail
    from household_findings
),

accepted as (
    select source, record_id, person_id
    from entity_map
)

select
    findings.kind,
    findings.detail,
    accepted.record_id is not null as evidence_record_accepted,
    accepted.record_id is not null and findings.person_id is not distinct from accepted.person_id
        as person_is_the_records,
    -- an 18-character identity number (17 digits and a check character) or an old 15-digit one
    not regexp_matches(coalesce(findings.detail, ''), '[0-9]{17}[0-9Xx]|[0-9]{15}') as detail_without_id_number
from findings
left join accepted on accepted.source = findings.source and accepted.record_id = findings.record_id
