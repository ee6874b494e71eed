-- int_pairs_id_near: candidate pairs whose identity numbers differ by one mistyped digit
-- or by two adjacent digits swapped.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Deletion neighbourhood: each id gives one key per position, the id with that position
-- deleted. One substitution at position i leaves the same key when both delete i; an
-- adjacent swap "ab" / "ba" at i, i+1 leaves the same key when one deletes i and the
-- other i+1 (both keep the other digit). So keys are joined where the deleted positions
-- are equal or adjacent. Two valid resident ids are never one such typo apart (the
-- MOD 11-2 check character catches every single substitution and adjacent swap), so at
-- least one side must be an invalid id: the probe side is only the invalid ids, which
-- keeps this pass small however large the city.
with ids as (
    select record_key, id_number, coalesce(id_valid, false) as id_valid
    from __renhu_link_records
    where id_number is not null and length(id_number) >= 5
),

deletion_keys as (
    select
        record_key,
        id_valid,
        pos,
        hash(length(id_number), substr(id_number, 1, pos - 1) || substr(id_number, pos + 1)) as deleted_key
    from ids, range(1, length(id_number) + 1) as t(pos)
),

probe as (
    select * from deletion_keys where not id_valid
),

block_sizes as (
    -- only keys some invalid id has: the counts of all 18 x N keys are never needed
    select deleted_key as block_key, pos, count(*) as block_size
    from deletion_keys
    where deleted_key in (select deleted_key from probe)
    group by deleted_key, pos
),

pairs_raw as (
    select
        least(p.record_key, k.record_key) as record_key_l,
        greatest(p.record_key, k.record_key) as record_key_r,
        s.block_size
    from probe as p
    inner join deletion_keys as k
        on p.deleted_key = k.deleted_key and abs(p.pos - k.pos) <= 1 and p.record_key <> k.record_key
    inner join block_sizes as s
        on s.block_key = k.deleted_key and s.pos = k.pos
    where s.block_size <= $max_block_size
),

pairs as (
    select record_key_l, record_key_r, max(block_size) as block_size
    from pairs_raw
    group by record_key_l, record_key_r
)

select * from pairs
