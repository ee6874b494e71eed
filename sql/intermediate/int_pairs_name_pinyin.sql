-- int_pairs_name_pinyin: candidate pairs with the same full-name pinyin in the same county,
-- whatever the birth date.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Reaches a mistyped or missing birth date. A record enters once per county it names
-- (household register, residence, id); a record that names none is keyed by name alone
-- (FEBRL-like sources without regions). Popular names (张伟) still make large blocks, capped
-- tighter than other passes ($max_block_size / 10): the other passes reach those records
-- through their birth date or id.
with records as (
    select
        record_key,
        pinyin_compact,
        hukou_region6,
        residence_region6,
        id_region6,
        coalesce(hukou_region6, residence_region6, id_region6) is null as no_region
    from __renhu_link_records
    where pinyin_compact is not null
),

record_regions as (
    select record_key, pinyin_compact, hukou_region6 as region6, no_region from records
    union all
    select record_key, pinyin_compact, residence_region6, no_region from records
    union all
    select record_key, pinyin_compact, id_region6, no_region from records
),

block_keys as (
    select distinct record_key, pinyin_compact || '|' || coalesce(region6, '') as block_key
    from record_regions
    where region6 is not null or no_region
),

block_sizes as (
    select block_key, count(*) as block_size
    from block_keys
    group by block_key
),

kept as (
    select k.record_key, k.block_key, s.block_size
    from block_keys as k
    inner join block_sizes as s using (block_key)
    where s.block_size between 2 and greatest($max_block_size // 10, 2)
),

pairs as (
    select l.record_key as record_key_l, r.record_key as record_key_r, max(l.block_size) as block_size
    from kept as l
    inner join kept as r
        on l.block_key = r.block_key and l.record_key < r.record_key
    group by l.record_key, r.record_key
)

select * from pairs
