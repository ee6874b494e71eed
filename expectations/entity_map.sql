-- entity_map suite frame: each accepted record against its cluster.
-- Grain: one row per record_key of raw_records or entity_map (a key in entity_map twice
-- gives two rows). Returns keys, booleans, labels and counts; no identity number or name.
with accepted as (
    select record_key, source, record_id
    from raw_records
),

clustered as (
    select record_key, source, record_id, person_id
    from entity_map
),

-- A person's own ids: a valid id whose birth date or sex contradicts the record it sits on
-- is someone else's number (a child enrolled under a parent's id). Linking that record to
-- the child is right, so it must not count as the child carrying two ids.
valid_ids as (
    select record_key, id_number
    from int_persons_standardized
    where id_valid and id_number is not null
        and not coalesce(birth_date_conflicts_id, false)
        and not coalesce(sex_conflicts_id, false)
),

person_valid_id_numbers as (
    select clustered.person_id, count(distinct valid_ids.id_number) as valid_id_numbers
    from clustered
    inner join valid_ids on valid_ids.record_key = clustered.record_key
    group by clustered.person_id
),

joined as (
    select
        coalesce(clustered.record_key, accepted.record_key) as record_key,
        coalesce(clustered.source, accepted.source) as source,
        clustered.record_key is not null as in_entity_map,
        accepted.record_key is not null as accepted_record,
        case
            when clustered.record_key is null or accepted.record_key is null then null
            else clustered.source is not distinct from accepted.source
                and clustered.record_id is not distinct from accepted.record_id
        end as same_source_record,
        case when clustered.record_key is not null then clustered.person_id is not null end as has_person_id,
        -- The format is judged here, not by a regex in pandas: a million person ids would be
        -- copied into Python only to be matched.
        case
            when clustered.person_id is null then null
            when regexp_full_match(clustered.person_id, 'P[0-9a-f]{12}') then 'P + 12 hex digits'
            else left(clustered.person_id, 24)
        end as person_id_format,
        coalesce(person_valid_id_numbers.valid_id_numbers, 0) as person_valid_id_numbers
    from clustered
    full outer join accepted on accepted.record_key = clustered.record_key
    left join person_valid_id_numbers on person_valid_id_numbers.person_id = clustered.person_id
)

select * from joined
