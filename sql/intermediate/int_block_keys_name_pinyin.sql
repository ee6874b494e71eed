-- int_block_keys_name_pinyin: the blocking keys of the same full-name pinyin in the same county,
-- whatever the birth date.
-- Grain: one row per record and key (a record enters once per county it names: household
-- register, residence, id; a record that names none is keyed by name alone, as FEBRL-like
-- sources without regions are).
-- Reaches a mistyped or missing birth date. Popular names (张伟) still make large blocks,
-- capped tighter than other passes (a tenth of the block limit, see linkage.block): the
-- other passes reach those records through their birth date or id.
-- own_id (the record's own valid id, hashed; linkage.block.OWN_ID_SQL) rides along: the pass
-- leaves out pairs of two different ones.
with records as (
    select
        record_key,
        own_id,
        pinyin_compact,
        hukou_region6,
        residence_region6,
        id_region6,
        coalesce(hukou_region6, residence_region6, id_region6) is null as no_region
    from __renhu_link_records
    where pinyin_compact is not null
),

record_regions as (
    select record_key, own_id, pinyin_compact, hukou_region6 as region6, no_region from records
    union all
    select record_key, own_id, pinyin_compact, residence_region6, no_region from records
    union all
    select record_key, own_id, pinyin_compact, id_region6, no_region from records
),

block_keys as (
    select distinct record_key, hash(pinyin_compact, coalesce(region6, '')) as block_key, own_id
    from record_regions
    where region6 is not null or no_region
)

select * from block_keys
