-- int_pairs_initials_birth: candidate pairs with the same name initials and birth date.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Initials survive a slip inside every part of a name at once (Flyn Cresp / Flynn Crdsp,
-- 张伟 / 张玮 by a homophone), where no full-name key does.
with block_keys as (
    select record_key, name_initials || '|' || cast(birth as varchar) as block_key
    from __renhu_link_records
    where name_initials is not null and birth is not null
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
