-- int_pairs_pinyin_sorted_birth: candidate pairs with the same sorted name syllables and birth date.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Sorted syllables make a romanized name in either order (WEI ZHANG, ZHANG WEI) meet 张伟;
-- the reordered compact form makes WEI ZHUGE meet 诸葛伟 (a record enters with each of its
-- keys: sorted syllables, reordered and, where a reordering exists, compact pinyin).
with name_keys as (
    select record_key, birth, name_pinyin_sorted as name_key from __renhu_link_records
    union all
    select record_key, birth, pinyin_reordered from __renhu_link_records
    union all
    select record_key, birth, pinyin_compact from __renhu_link_records where pinyin_reordered is not null
),

block_keys as (
    select distinct record_key, name_key || '|' || cast(birth as varchar) as block_key
    from name_keys
    where name_key is not null and birth is not null
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
    select l.record_key as record_key_l, r.record_key as record_key_r, max(l.block_size) as block_size
    from kept as l
    inner join kept as r
        on l.block_key = r.block_key and l.record_key < r.record_key
    group by l.record_key, r.record_key
)

select * from pairs
