-- int_pairs_name_token_birth: candidate pairs sharing one name syllable (or latin name word) and the birth date.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Reaches a typo or a change in any one part of the name (张伟 / 张卫, a married surname,
-- a misspelt given name) without giving up the birth date.
with tokens as (
    select distinct record_key, unnest(string_split(name_pinyin, ' ')) as token, birth
    from __renhu_link_records
    where name_pinyin is not null and birth is not null
),

block_keys as (
    select record_key, token || '|' || cast(birth as varchar) as block_key
    from tokens
    where token <> ''
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
