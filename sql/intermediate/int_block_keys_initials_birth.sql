-- int_block_keys_initials_birth: the blocking key of the same name initials and birth date.
-- Grain: one row per record with a name and a birth date.
-- Initials survive a slip inside every part of a name at once (Flyn Cresp / Flynn Crdsp,
-- 张伟 / 张玮 by a homophone), where no full-name key does.
-- own_id (the record's own valid id, hashed; linkage.block.OWN_ID_SQL) rides along: the pass
-- leaves out pairs of two different ones.
with initials as (
    -- first letter of each syllable (each word of a latin name), in written order
    select
        record_key,
        own_id,
        birth,
        list_aggregate(list_transform(string_split(name_pinyin, ' '), w -> left(w, 1)), 'string_agg', '') as name_initials
    from __renhu_link_records
    where name_pinyin is not null and birth is not null
),

block_keys as (
    select record_key, hash(name_initials, birth) as block_key, own_id
    from initials
    where name_initials <> ''
)

select * from block_keys
