-- int_block_keys_phone: the blocking key of records that give the same phone number.
-- Grain: one row per record with a phone.
-- A phone shared by a whole office or a rental agent makes a huge block: capped.
with block_keys as (
    select record_key, hash(phone) as block_key
    from __renhu_link_records
    where phone is not null
)

select * from block_keys
