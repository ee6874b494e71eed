-- run_source_counts suite frame: the accounting of run $run_id, per source.
-- Grain: one row per source that appears in run_source_counts (for the run) or in any
-- stage table. Stage tables hold the latest run only.
with ledger as (
    select source, rows_in, accepted, quarantined
    from run_source_counts
    where run_id = $run_id
),

raw_rows as (select source, count(*) as n from raw_records group by source),
quarantine_rows as (select source, count(*) as n from quarantine group by source),
standardized_rows as (select source, count(*) as n from int_persons_standardized group by source),
entity_map_rows as (select source, count(*) as n from entity_map group by source),
file_rows as (select source, sum(rows) as n from ingest_files where run_id = $run_id group by source),

sources as (
    select source from ledger
    union select source from raw_rows
    union select source from quarantine_rows
    union select source from standardized_rows
    union select source from entity_map_rows
)

select
    sources.source,
    ledger.rows_in,
    ledger.accepted,
    ledger.quarantined,
    ledger.rows_in - ledger.accepted - ledger.quarantined as unaccounted_rows,
    coalesce(raw_rows.n, 0) as raw_records_rows,
    coalesce(quarantine_rows.n, 0) as quarantine_rows,
    coalesce(standardized_rows.n, 0) as standardized_rows,
    coalesce(entity_map_rows.n, 0) as entity_map_rows,
    file_rows.n as ingest_file_rows
from sources
left join ledger on ledger.source = sources.source
left join raw_rows on raw_rows.source = sources.source
left join quarantine_rows on quarantine_rows.source = sources.source
left join standardized_rows on standardized_rows.source = sources.source
left join entity_map_rows on entity_map_rows.source = sources.source
left join file_rows on file_rows.source = sources.source
order by sources.source
