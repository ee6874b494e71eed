-- int_pairs_id_near: candidate pairs whose identity numbers differ by one mistyped character
-- or by two adjacent characters swapped.
-- Grain: one row per pair of records (record_key_l < record_key_r).
-- Two valid resident ids are never one such slip apart (the MOD 11-2 check character
-- catches every single substitution and adjacent swap), so one side is always an
-- invalid number. Each invalid number therefore spells out its one-slip neighbours
-- (every position replaced by 0-9 or X, every adjacent pair swapped: about 200 strings)
-- and these are joined on equality to every record's number (by hash). The work grows with the
-- invalid ids, not with the city. A number held by more than $max_block_size records (a
-- placeholder) is not a target.
with probe as (
    select record_key, id_number
    from __renhu_link_records
    where id_number is not null and not id_valid and length(id_number) between 5 and 20
),

substitutions as (
    select p.record_key, hash(substr(p.id_number, 1, t.pos - 1) || d.ch || substr(p.id_number, t.pos + 1)) as variant
    from probe as p,
        range(1, length(p.id_number) + 1) as t(pos),
        (select unnest(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'X']) as ch) as d
    where d.ch <> substr(p.id_number, t.pos, 1)
),

swaps as (
    select
        p.record_key,
        hash(
            substr(p.id_number, 1, t.pos - 1) || substr(p.id_number, t.pos + 1, 1)
            || substr(p.id_number, t.pos, 1) || substr(p.id_number, t.pos + 2)
        ) as variant
    from probe as p, range(1, length(p.id_number)) as t(pos)
    where substr(p.id_number, t.pos, 1) <> substr(p.id_number, t.pos + 1, 1)
),

variants as (
    select * from substitutions
    union all
    select * from swaps
),

-- Numbers are compared by their 64-bit hash: a join on integers is several times faster,
-- and a collision only adds a candidate pair that the comparison then rejects.
targets as (
    select record_key, hash(id_number) as id_hash
    from __renhu_link_records
    where id_number is not null and hash(id_number) in (select variant from variants)
),

block_sizes as (
    select id_hash as block_key, count(*) as block_size
    from targets
    group by id_hash
),

pairs as (
    select
        least(v.record_key, t.record_key) as record_key_l,
        greatest(v.record_key, t.record_key) as record_key_r,
        max(s.block_size) as block_size
    from variants as v
    inner join targets as t on v.variant = t.id_hash
    inner join block_sizes as s on s.block_key = t.id_hash
    where v.record_key <> t.record_key and s.block_size <= $max_block_size
    group by least(v.record_key, t.record_key), greatest(v.record_key, t.record_key)
)

select * from pairs
