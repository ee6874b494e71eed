-- int_pairs_surname_birth_region: candidate pairs with the same surname pinyin, birth date and county.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Catches given-name changes and typos: the given name is left out of the key. A record
-- enters once per county it is known in (household register, residence, id).
with record_regions as (
    select record_key, surname_pinyin, birth, hukou_region6 as region6 from __renhu_link_records
    union all
    select record_key, surname_pinyin, birth, residence_region6 from __renhu_link_records
    union all
    select record_key, surname_pinyin, birth, id_region6 from __renhu_link_records
),

block_keys as (
    select distinct record_key, surname_pinyin || '|' || cast(birth as varchar) || '|' || region6 as block_key
    from record_regions
    where region6 is not null and surname_pinyin is not null and birth is not null
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
    where s.block_size between 2 and $max_block_size
),

pairs as (
    select distinct l.record_key as record_key_l, r.record_key as record_key_r, l.block_size
    from kept as l
    inner join kept as r
        on l.block_key = r.block_key and l.record_key < r.record_key
)

select * from pairs
