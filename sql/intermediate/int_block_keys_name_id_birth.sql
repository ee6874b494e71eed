-- int_block_keys_name_id_birth: the blocking key of the same name and the same birth-date part of the id.
-- Grain: one row per record with a name and an id whose birth-date part reads as digits.
-- Reaches records whose id has a typo outside the birth-date digits and whose own
-- birth-date field is empty or wrong. Positions 7-14 of an 18-digit id, 7-12 (yyMMdd,
-- read as 19yy) of a 15-digit one.
-- own_id (the record's own valid id, hashed; linkage.block.OWN_ID_SQL) rides along: the pass
-- leaves out pairs of two different ones.
with block_keys as (
    select record_key, hash(name, id_birth_part) as block_key, own_id
    from __renhu_link_records
    where name is not null and id_birth_part is not null
)

select * from block_keys
