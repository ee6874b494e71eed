-- int_pairs_name_pinyin_birth: candidate pairs with the same full-name pinyin and birth date.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Pinyin rather than characters so that traditional/simplified forms and homophone
-- characters (张伟 / 张玮) still meet; compact (no spaces), so that ZHUGE WEI meets 诸葛伟
-- (zhu ge wei). birth is the record's birth date, else the id's.
with block_keys as (
    select record_key, pinyin_compact || '|' || cast(birth as varchar) as block_key
    from __renhu_link_records
    where pinyin_compact is not null and birth is not null
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
    select l.record_key as record_key_l, r.record_key as record_key_r, l.block_size
    from kept as l
    inner join kept as r
        on l.block_key = r.block_key and l.record_key < r.record_key
)

select * from pairs
