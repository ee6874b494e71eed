-- int_pairs_name_pinyin: candidate pairs with the same full-name pinyin, whatever the birth date.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Reaches a mistyped or missing birth date. Popular names (张伟) make large blocks that
-- are capped tighter than other passes ($max_block_size / 5): the other passes reach
-- those records through their birth date or id.
with block_keys as (
    select record_key, name_pinyin as block_key
    from __renhu_link_records
    where name_pinyin is not null
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
    where s.block_size between 2 and greatest($max_block_size // 5, 2)
),

pairs as (
    select l.record_key as record_key_l, r.record_key as record_key_r, l.block_size
    from kept as l
    inner join kept as r
        on l.block_key = r.block_key and l.record_key < r.record_key
)

select * from pairs
