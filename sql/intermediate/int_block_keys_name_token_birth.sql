-- int_block_keys_name_token_birth: the blocking keys of one word of a name and the birth date,
-- for pairs where at least one side is a latin-script name (linkage.block pairs only those).
-- Grain: one row per record and key (one per word of its name), with latin: whether the
-- record's own name is latin-script.
-- Reaches a misspelt or changed part of a romanized name (a typo in the given name, a
-- married surname). Han names are paired only with latin ones here: their syllables
-- (wei, li) are so common that this key would pair most of a birth date's records.
-- own_id (the record's own valid id, hashed; linkage.block.OWN_ID_SQL) rides along: the pass
-- leaves out pairs of two different ones.
with latin_births as (
    select distinct birth
    from __renhu_link_records
    where name_script = 'latin' and birth is not null
),

tokens as (
    select distinct
        r.record_key,
        r.own_id,
        unnest(string_split(r.name_pinyin, ' ')) as token,
        r.birth,
        coalesce(r.name_script = 'latin', false) as latin
    from __renhu_link_records as r
    where r.name_pinyin is not null and r.birth in (select birth from latin_births)
),

block_keys as (
    select record_key, hash(token, birth) as block_key, latin, own_id
    from tokens
    where token <> ''
)

select * from block_keys
