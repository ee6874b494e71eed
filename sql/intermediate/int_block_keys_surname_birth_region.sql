-- int_block_keys_surname_birth_region: the blocking keys of the same surname pinyin, birth date and county.
-- Grain: one row per record and key (a record enters once per county it is known in:
-- household register, residence, id).
-- Catches given-name changes and typos: the given name is left out of the key.
-- own_id (the record's own valid id, hashed; linkage.block.OWN_ID_SQL) rides along: the pass
-- leaves out pairs of two different ones.
with record_regions as (
    select record_key, own_id, surname_pinyin, birth, hukou_region6 as region6 from __renhu_link_records
    union all
    select record_key, own_id, surname_pinyin, birth, residence_region6 from __renhu_link_records
    union all
    select record_key, own_id, surname_pinyin, birth, id_region6 from __renhu_link_records
),

block_keys as (
    select distinct record_key, hash(surname_pinyin, birth, region6) as block_key, own_id
    from record_regions
    where region6 is not null and surname_pinyin is not null and birth is not null
)

select * from block_keys
