-- int_pairs_name_id_birth: candidate pairs with the same name and the same birth-date part of the id.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Reaches records whose id has a typo outside the birth-date digits and whose own
-- birth-date field is empty or wrong. Positions 7-14 of an 18-digit id, 7-12 (yyMMdd,
-- read as 19yy) of a 15-digit one.
with block_keys as (
    select record_key, name || '|' || id_birth_part as block_key
    from __renhu_link_records
    where name is not null and id_birth_part is not null
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
