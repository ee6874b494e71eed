-- int_persons_standardized suite frame: identity-number arithmetic redone for one source.
-- Grain: one row per record of int_persons_standardized, every source at once (the
-- `source` column makes the batches).
-- Nothing personal leaves this query: only labels (valid, wrong_check_character, agrees,
-- differs, present ...) and record ids (any run of 15+ digits masked) are returned.
-- The raw name is raw_records' own cell (int_persons_raw_values), not stored twice.
with std as (
    select
        s.source,
        s.record_id,
        s.id_number,
        s.id_type,
        s.id_valid,
        s.birth_date,
        s.sex,
        s.name,
        v.name_raw
    from int_persons_standardized as s
    left join int_persons_raw_values as v using (record_key)
),

-- Ids that look like resident ids: typed so by standardize, or untyped with a resident-id shape.
resident as (
    select
        *,
        id_number is not null
        and (
            id_type = 'resident_id'
            or (id_type is null and regexp_full_match(id_number, '[0-9]{17}[0-9Xx]|[0-9]{15}'))
        ) as is_resident_id,
        regexp_full_match(id_number, '[0-9]{17}[0-9X]') as is_18
    from std
),

arithmetic as (
    select
        *,
        -- ISO 7064 MOD 11-2: weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2 on the first 17 digits.
        case when is_18 then
            substr('10X98765432', 1 + (list_dot_product(
                string_split(left(id_number, 17), '')::integer[],
                [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]::integer[]
            )::integer % 11), 1)
        end as expected_check_character,
        case when is_18 then try_strptime(substr(id_number, 7, 8), '%Y%m%d')::date end as encoded_birth_date,
        case when is_18 then
            case when (ascii(substr(id_number, 17, 1)) - 48) % 2 = 1 then 'M' else 'F' end
        end as encoded_sex
    from resident
),

labelled as (
    select
        *,
        is_18
        and expected_check_character = substr(id_number, 18, 1)
        and encoded_birth_date between date '1900-01-01' and current_date as id_ok
    from arithmetic
)

select
    source,
    case when length(record_id) >= 15 and regexp_matches(record_id, '[0-9]{15}')
        then regexp_replace(record_id, '([0-9]{6})[0-9]{5,}([0-9]{3}[0-9Xx])', '\1********\2', 'g')
            || '#' || left(md5($mask_salt || record_id), 8)
        else record_id
    end as record_id,
    case
        when not is_resident_id then null
        when not is_18 then 'not_18_characters'
        when expected_check_character <> substr(id_number, 18, 1) then 'wrong_check_character'
        when not coalesce(encoded_birth_date between date '1900-01-01' and current_date, false)
            then 'impossible_birth_date'
        when id_valid is distinct from true then 'flag_disagrees'
        else 'valid'
    end as id_check,
    case
        when not coalesce(id_ok, false) or birth_date is null then null
        when birth_date = encoded_birth_date then 'agrees'
        else 'differs'
    end as birth_date_vs_id,
    case
        when not coalesce(id_ok, false) or sex is null or sex not in ('M', 'F') then null
        when sex = encoded_sex then 'agrees'
        else 'differs'
    end as sex_vs_id,
    case
        when coalesce(trim(name_raw), '') = '' and name is null then null
        when coalesce(trim(name), '') <> '' then 'present'
        else 'empty_after_standardization'
    end as name_check
from labelled
