-- int_pairs_name_token_birth: candidate pairs where a latin-script name shares one word with
-- the other record's name, and the birth dates are equal.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Reaches a misspelt or changed part of a romanized name (a typo in the given name, a
-- married surname). Han names are left to surname + birth + county: their syllables
-- (wei, li) are so common that this key would pair most of a birth date's records.
with latin_births as (
    select distinct birth
    from __renhu_link_records
    where name_script = 'latin' and birth is not null
),

tokens as (
    select distinct
        r.record_key,
        unnest(string_split(r.name_pinyin, ' ')) as token,
        r.birth,
        coalesce(r.name_script = 'latin', false) as latin
    from __renhu_link_records as r
    where r.name_pinyin is not null and r.birth in (select birth from latin_births)
),

block_keys as (
    select record_key, token || '|' || cast(birth as varchar) as block_key, latin
    from tokens
    where token <> ''
),

block_sizes as (
    select block_key, count(*) as block_size
    from block_keys
    group by block_key
),

kept as (
    select k.record_key, k.block_key, k.latin, s.block_size
    from block_keys as k
    inner join block_sizes as s using (block_key)
    where s.block_size between 2 and $max_block_size
),

pairs as (
    select l.record_key as record_key_l, r.record_key as record_key_r, max(l.block_size) as block_size
    from kept as l
    inner join kept as r
        on l.block_key = r.block_key and l.record_key < r.record_key and (l.latin or r.latin)
    group by l.record_key, r.record_key
)

select * from pairs
