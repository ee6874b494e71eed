-- int_block_keys_name_pinyin_birth: the blocking key of the same full-name pinyin and birth date.
-- Grain: one row per record with a name and a birth date.
-- Pinyin rather than characters so that traditional/simplified forms and homophone
-- characters (张伟 / 张玮) still meet; compact (no spaces), so that ZHUGE WEI meets 诸葛伟
-- (zhu ge wei). birth is the record's birth date, else the id's.
-- own_id (the record's own valid id, hashed; linkage.block.OWN_ID_SQL) rides along: the pass
-- leaves out pairs of two different ones.
with block_keys as (
    select record_key, hash(pinyin_compact, birth) as block_key, own_id
    from __renhu_link_records
    where pinyin_compact is not null and birth is not null
)

select * from block_keys
