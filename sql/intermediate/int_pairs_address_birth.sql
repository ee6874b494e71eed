-- int_pairs_address_birth: candidate pairs whose addresses start alike and whose birth dates are equal.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- For a name changed or mistyped beyond recognition: the same birth date at the same place.
-- The key is the first 4 characters of each address the record gives (standardized
-- addresses start at the township or street; latin ones at the house number and street).
with addresses as (
    select record_key, birth, hukou_address as address from __renhu_link_records
    union all
    select record_key, birth, residence_address from __renhu_link_records
),

block_keys as (
    select distinct record_key, lower(substr(address, 1, 4)) || '|' || cast(birth as varchar) as block_key
    from addresses
    where address is not null and length(address) >= 4 and birth is not null
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
