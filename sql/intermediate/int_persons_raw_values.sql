-- int_persons_raw_values (a view)
-- Purpose: each standardized record's values as its department recorded them, under the
--   `<field>_raw` names standardize gives them, and where the record came from (file, row,
--   the file's digest, the night that loaded it). int_persons_standardized keeps only the
--   standard values: these are raw_records' own cells, so this view reads them there
--   instead of the night writing every one a second time.
-- Grain: one row per record of raw_records, which is one row per record of
--   int_persons_standardized (the same record_key).
-- Readers: an auditor tracing a record to its file; department reports (a clerk's own
--   spelling of a name or id); completeness in share_rates (a field the department mapped
--   but never filled); the standardized suite.
with recorded as (
    select
        record_key,
        source,
        record_id,
        file,
        row_number,
        file_sha256,
        load_batch,
        name as name_raw,
        id_number as id_number_raw,
        birth_date as birth_date_raw,
        sex as sex_raw,
        ethnicity as ethnicity_raw,
        phone as phone_raw,
        hukou_address as hukou_address_raw,
        residence_address as residence_address_raw,
        hukou_region as hukou_region_raw,
        residence_region as residence_region_raw,
        relation_to_head as relation_to_head_raw,
        registered_at as registered_at_raw,
        updated_at as updated_at_raw
    from raw_records
)

select * from recorded
