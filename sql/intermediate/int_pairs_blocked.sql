-- int_pairs_blocked: the union of every blocking pass's candidate pairs, without doubles.
-- Grain: one row per pair of records (record_key_l < record_key_r) found by any pass;
-- passes lists the passes that found it (a bit per pass, in linkage.block.BLOCKING_PASSES order).
with all_pairs as (
    select record_key_l, record_key_r, 1 as pass_bit from int_pairs_id_number
    union all
    select record_key_l, record_key_r, 2 from int_pairs_id_near
    union all
    select record_key_l, record_key_r, 4 from int_pairs_name_pinyin_birth
    union all
    select record_key_l, record_key_r, 8 from int_pairs_pinyin_sorted_birth
    union all
    select record_key_l, record_key_r, 16 from int_pairs_surname_birth_region
    union all
    select record_key_l, record_key_r, 32 from int_pairs_name_id_birth
    union all
    select record_key_l, record_key_r, 64 from int_pairs_phone
    union all
    select record_key_l, record_key_r, 128 from int_pairs_name_token_birth
    union all
    select record_key_l, record_key_r, 256 from int_pairs_name_pinyin
    union all
    select record_key_l, record_key_r, 512 from int_pairs_initials_birth
    union all
    select record_key_l, record_key_r, 1024 from int_pairs_address_birth
),

pairs as (
    select record_key_l, record_key_r, bit_or(pass_bit) as passes
    from all_pairs
    group by record_key_l, record_key_r
)

select * from pairs
