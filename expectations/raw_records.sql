-- raw_records suite frame: what the per-source checks of the raw extract look at.
-- Grain: one row per input row in the latest run, every source at once (the `source`
-- column makes the batches): accepted rows (raw_records) and rejected rows (quarantine).
-- Nothing personal leaves this query: identity numbers and dates are reduced to their
-- shape (digit -> 9, Han character -> 字, other letter -> A), record ids have any run of
-- 15+ digits masked like an identity number (plus a short salted digest that keeps them
-- distinct), names are not read at all.
with accepted as (
    select
        source,
        'accepted' as outcome,
        record_id,
        trim(id_number) as id_number,
        trim(birth_date) as birth_date,
        trim(registered_at) as registered_at,
        trim(updated_at) as updated_at,
        name is not null as has_name,
        id_number is not null as has_id_number,
        sex is not null as has_sex,
        birth_date is not null as has_birth_date,
        ethnicity is not null as has_ethnicity,
        phone is not null as has_phone,
        hukou_address is not null as has_hukou_address,
        hukou_region is not null as has_hukou_region,
        residence_address is not null as has_residence_address,
        residence_region is not null as has_residence_region,
        household_id is not null as has_household_id,
        relation_to_head is not null as has_relation_to_head,
        house_id is not null as has_house_id,
        employer is not null as has_employer,
        registered_at is not null as has_registered_at,
        updated_at is not null as has_updated_at
    from raw_records
),

-- Most dates come as 1990-01-02 or 2026-11-20 08:00:00: those are judged per row by a
-- cast (a valid date and time in that exact form parses in every reading below; casts
-- cost a fraction of strptime or the regexes). The character tests come first and are
-- cheap, so only rows of that shape are cast; a quarantined row has no dates to judge.
iso_dates as (
    select
        * exclude (iso),
        iso[1] as birth_date_iso,
        iso[2] as registered_at_iso,
        iso[3] as updated_at_iso
    from (
        select
            *,
            -- One test for the three date columns, applied to each.
            list_transform([birth_date, registered_at, updated_at], d ->
                case when length(d) in (10, 19) and d[5] = '-' and d[8] = '-'
                        and d[1] between '0' and '9' and d[10] between '0' and '9'
                    then try_cast(left(d, 10) as date) is not null
                        and (length(d) = 10 or d[11] = ' '
                            and d[12] between '0' and '9' and d[19] between '0' and '9'
                            and try_cast(substr(d, 12) as time) is not null)
                    else false
                end
            ) as iso
        from accepted
    )
),

rejected as (
    select
        source,
        'quarantined' as outcome,
        nullif(trim(record_id), '') as record_id,
        null::varchar as id_number,
        null::varchar as birth_date,
        null::varchar as registered_at,
        null::varchar as updated_at,
        false as has_name,
        false as has_id_number,
        false as has_sex,
        false as has_birth_date,
        false as has_ethnicity,
        false as has_phone,
        false as has_hukou_address,
        false as has_hukou_region,
        false as has_residence_address,
        false as has_residence_region,
        false as has_household_id,
        false as has_relation_to_head,
        false as has_house_id,
        false as has_employer,
        false as has_registered_at,
        false as has_updated_at,
        false as birth_date_iso,
        false as registered_at_iso,
        false as updated_at_iso
    from quarantine
),

extract_rows as (
    select * from iso_dates
    union all
    select * from rejected
),

-- Rows in: tonight's ledger figure when ingest wrote one, else what the tables hold (two
-- counts: the rows themselves are read once, below); and the latest earlier night's.
source_rows as (
    select source, sum(rows_in) as rows_in
    from (
        select source, count(*) as rows_in from raw_records group by source
        union all
        select source, count(*) from quarantine group by source
    )
    group by source
),

ledger_tonight as (
    select source, max(rows_in) as rows_in from run_source_counts where run_id = $run_id group by source
),

-- The last published night before this one (renhu_compared_nights, made by
-- flows/validation.py): a night that failed is no yardstick.
ledger_before as (
    select source, arg_max(rows_in, run_id) as rows_in
    from run_source_counts
    where run_id < $run_id and run_id in (select run_id from renhu_compared_nights)
    group by source
),

nights as (
    select
        source_rows.source,
        coalesce(ledger_tonight.rows_in, source_rows.rows_in) / nullif(ledger_before.rows_in, 0) as row_count_ratio
    from source_rows
    left join ledger_tonight on ledger_tonight.source = source_rows.source
    left join ledger_before on ledger_before.source = source_rows.source
),

-- The other dates are judged once per distinct value, in the forms linkage/dates.py reads:
-- year, month, day with - / . or 年月日 (time and zone allowed), 8 digits, an Excel day
-- serial (1900-2100), a date in Han numerals; full-width digits count as digits. A
-- clerk's placeholder (无, 不详, -, NULL ...) is an empty cell, not a bad date.
date_values as (
    select distinct value
    from (
        select birth_date as value from iso_dates where not coalesce(birth_date_iso, false)
        union all select registered_at from iso_dates where not coalesce(registered_at_iso, false)
        union all select updated_at from iso_dates where not coalesce(updated_at_iso, false)
    )
    where value is not null
),

date_text as (
    select value, trim(translate(value, '０１２３４５６７８９－／．：　', '0123456789-/.: ')) as text
    from date_values
),

date_parts as (
    select
        value,
        text,
        regexp_extract(
            text,
            '^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?:(?:[T\s]+\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$',
            ['y', 'm', 'd']
        ) as ymd
    from date_text
),

date_checks as (
    select
        value,
        case
            when upper(text) in ('', '无', '不详', '未知', '空', '暂无', '-', '--', '/', 'NULL', 'NONE', 'N/A', 'NA', 'NAN', 'NAT')
                then null
            when ymd.y <> '' and try_cast(ymd.y || '-' || lpad(ymd.m, 2, '0') || '-' || lpad(ymd.d, 2, '0') as date) is not null
                then 'parses'
            when regexp_full_match(text, '\d{8}') and try_strptime(text, '%Y%m%d') is not null then 'parses'
            when regexp_full_match(text, '\d{1,5}(?:\.\d+)?')
                and cast(split_part(text, '.', 1) as integer) between 61 and 73415 then 'parses'
            when regexp_full_match(text, '[〇零○一二三四五六七八九]{4}年[一二三四五六七八九十]{1,2}月[一二三四五六七八九十]{1,3}日?')
                then 'parses'
            else left(regexp_replace(regexp_replace(regexp_replace(
                text, '\p{Han}', '字', 'g'), '[0-9]', '9', 'g'), '[^9字\s\p{P}\p{S}]', 'A', 'g'), 40)
        end as date_check
    from date_parts
),

masked as (
    select
        *,
        -- Masking alone would make two different ids look alike (330681********7039) and the
        -- uniqueness check would fail on distinct records: a short digest of the full value
        -- keeps distinct ids distinct without showing them. The digest is salted with a
        -- random value of this validation run that is never stored: an unsalted digest of
        -- an id whose first 6 and last 4 characters are shown is reversed by trying the
        -- few million birth dates and sequence numbers in between.
        case when length(record_id) >= 15 and regexp_matches(record_id, '[0-9]{15}')
            then regexp_replace(record_id, '([0-9]{6})[0-9]{5,}([0-9]{3}[0-9Xx])', '\1********\2', 'g')
                 || '#' || left(md5($mask_salt || record_id), 8)
            else record_id
        end as record_id_masked,
        -- The shape of a well-formed id is one of three strings (one regex tells them from the
        -- rest, the length and last character tell them apart); only the others need the
        -- regexes that draw the shape.
        case
            when regexp_full_match(id_number, '[0-9]{17}[0-9X]|[0-9]{15}') then
                case
                    when length(id_number) = 15 then '999999999999999'
                    when right(id_number, 1) = 'X' then '99999999999999999X'
                    else '999999999999999999'
                end
            else left(regexp_replace(regexp_replace(regexp_replace(regexp_replace(
                id_number, '\p{Han}', '字', 'g'), '[0-9]', '9', 'g'), '[０-９]', '９', 'g'),
                '[^9９Xx字\s\p{P}\p{S}]', 'A', 'g'), 40)
        end as id_number_shape
    from extract_rows
),

shaped as (
    select
        masked.source,
        outcome,
        record_id_masked as record_id,
        case when outcome = 'accepted' then record_id_masked end as accepted_record_id,
        id_number_shape,
        case when birth_date_iso then 'parses' else birth.date_check end as birth_date_check,
        case when registered_at_iso then 'parses' else registered.date_check end as registered_at_check,
        case when updated_at_iso then 'parses' else updated.date_check end as updated_at_check,
        nights.row_count_ratio,
        true as has_record_id,
        has_name, has_id_number, has_sex, has_birth_date, has_ethnicity, has_phone,
        has_hukou_address, has_hukou_region, has_residence_address, has_residence_region,
        has_household_id, has_relation_to_head, has_house_id, has_employer,
        has_registered_at, has_updated_at
    from masked
    left join nights on nights.source = masked.source
    left join date_checks as birth on birth.value = masked.birth_date
    left join date_checks as registered on registered.value = masked.registered_at
    left join date_checks as updated on updated.value = masked.updated_at
)

select * from shaped
