-- int_block_keys_address_birth: the blocking keys of addresses starting alike and the same birth date.
-- Grain: one row per record and key (a record gives up to two: household-register and residence address).
-- For a name changed or mistyped beyond recognition: the same birth date at the same place.
-- The key is the first 4 characters of an address (standardized addresses start at the
-- township or street; latin ones at the house number and street), lowercased.
-- own_id (the record's own valid id, hashed; linkage.block.OWN_ID_SQL) rides along: the pass
-- leaves out pairs of two different ones.
with addresses as (
    select record_key, birth, own_id, hukou_address as address from __renhu_link_records
    union all
    select record_key, birth, own_id, residence_address from __renhu_link_records
),

block_keys as (
    select distinct record_key, hash(lower(substr(address, 1, 4)), birth) as block_key, own_id
    from addresses
    where address is not null and length(address) >= 4 and birth is not null
)

select * from block_keys
