-- int_pairs_initials_birth: candidate pairs with the same name initials and birth date.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Initials survive a slip inside every part of a name at once (Flyn Cresp / Flynn Crdsp,
-- 张伟 / 张玮 by a homophone), where no full-name key does.
with initials as (
    -- first letter of each syllable (each word of a latin name), in written order
    select
        record_key,
        birth,
        list_aggregate(list_transform(string_split(name_pinyin, ' '), w -> left(w, 1)), 'string_agg', '') as name_initials
    from __renhu_link_records
    where name_pinyin is not null and birth is not null
),

block_keys as (
    select record_key, name_initials || '|' || cast(birth as varchar) as block_key
    from initials
    where name_initials <> ''
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
