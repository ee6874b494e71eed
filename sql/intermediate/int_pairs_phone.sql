-- int_pairs_phone: candidate pairs of records that give the same phone number.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- A phone shared by a whole office or a rental agent makes a huge block: capped.
with block_keys as (
    select record_key, phone as block_key
    from __renhu_link_records
    where phone is not null
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
