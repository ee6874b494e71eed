-- int_block_keys_id_number: the blocking key of records that carry the same identity number.
-- Grain: one row per record with an id_number.
-- A block larger than the cap (a placeholder id such as 000000..., an id copied onto a
-- whole household) is skipped and reported by linkage.block.
with block_keys as (
    select record_key, hash(id_number) as block_key
    from __renhu_link_records
    where id_number is not null
)

select * from block_keys
