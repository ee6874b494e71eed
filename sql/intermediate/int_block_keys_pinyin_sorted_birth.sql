-- int_block_keys_pinyin_sorted_birth: the blocking keys of the same sorted name syllables and birth date.
-- Grain: one row per record and key.
-- Sorted syllables make a romanized name in either order (WEI ZHANG, ZHANG WEI) meet 张伟;
-- the reordered compact form makes WEI ZHUGE meet 诸葛伟 (a record enters with each of its
-- keys: sorted syllables, reordered and, where a reordering exists, compact pinyin).
-- own_id (the record's own valid id, hashed; linkage.block.OWN_ID_SQL) rides along: the pass
-- leaves out pairs of two different ones.
with name_keys as (
    select record_key, own_id, birth, name_pinyin_sorted as name_key from __renhu_link_records
    union all
    select record_key, own_id, birth, pinyin_reordered from __renhu_link_records
    union all
    select record_key, own_id, birth, pinyin_compact from __renhu_link_records where pinyin_reordered is not null
),

block_keys as (
    select distinct record_key, hash(name_key, birth) as block_key, own_id
    from name_keys
    where name_key is not null and birth is not null
)

select * from block_keys
