-- share_rates suite frame: the published share rates next to the same figures recomputed
-- from entity_map. Grain: one row per source present in share_rates or entity_map.
with published as (
    select source, records, persons, shared_persons, share_rate
    from share_rates
),

source_records as (
    select source, count(*) as records
    from entity_map
    group by source
),

source_persons as (
    select distinct source, person_id
    from entity_map
),

person_sources as (
    select person_id, count(*) as sources_holding
    from source_persons
    group by person_id
),

recomputed as (
    select
        source_persons.source,
        count(*) as persons,
        count(*) filter (where person_sources.sources_holding > 1) as shared_persons
    from source_persons
    inner join person_sources on person_sources.person_id = source_persons.person_id
    group by source_persons.source
)

select
    coalesce(published.source, recomputed.source) as source,
    published.records,
    published.persons,
    published.shared_persons,
    published.share_rate,
    case
        -- no persons: the rate is empty; any value there is an error
        when coalesce(published.persons, 0) = 0 then case when published.share_rate is null then null else 1.0 end
        when published.share_rate is null then 1.0
        else abs(published.share_rate - published.shared_persons / published.persons)
    end as share_rate_error,
    coalesce(source_records.records, 0) as records_recomputed,
    coalesce(recomputed.persons, 0) as persons_recomputed,
    coalesce(recomputed.shared_persons, 0) as shared_persons_recomputed
from published
full outer join recomputed on recomputed.source = published.source
left join source_records on source_records.source = coalesce(published.source, recomputed.source)
