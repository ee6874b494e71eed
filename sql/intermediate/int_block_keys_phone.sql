-- int_block_keys_phone: the blocking key of records that give the same phone number.
-- Grain: one row per record with a phone.
-- A phone shared by a whole office or a rental agent makes a huge block: capped.
-- own_id (the record's own valid id, hashed; linkage.block.OWN_ID_SQL) rides along: the pass
-- leaves out pairs of two different ones.
with block_keys as (
    select record_key, hash(phone) as block_key, own_id
    from __renhu_link_records
    where phone is not null
)

select * from block_keys
