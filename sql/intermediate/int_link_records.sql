-- int_link_records: the fields blocking and clustering read, derived in DuckDB from the
-- standardized records (the same values linkage.block.prepare_link_records gives in polars).
-- Grain: one row per standardized record (record_key).
-- Reads __renhu_link_std: int_persons_standardized's linkage columns, with any a source
-- lacks as typed nulls. Deriving them here spares handing a million rows to polars and back.
-- birth is the record's birth date, else its id's; id_own a valid id that is the record's
-- own (an id whose birth date no single slip reconciles with the record's is someone
-- else's: a child registered with a parent's number); addresses are cut to the 4
-- characters the address pass keys on.
with std as (
    select *, string_split(name_pinyin, ' ') as words, length(surname) as n_surname
    from __renhu_link_std
),

-- The record's and its id's birth years as four digits, and the positions where they differ:
-- only where a slip of the year is what the test below asks about (same month and day,
-- another year). Built for every row, the digit lists cost ~1 s of ~8 at 10M records.
birth_years as (
    select
        *,
        case when year_slip_possible then lpad(year(birth_date)::varchar, 4, '0') end as birth_year_digits,
        case when year_slip_possible then lpad(year(id_birth_date)::varchar, 4, '0') end as id_birth_year_digits
    from (
        select
            *,
            month(birth_date) = month(id_birth_date) and day(birth_date) = day(id_birth_date)
                and year(birth_date) <> year(id_birth_date) as year_slip_possible
        from std
    )
),

year_differences as (
    select
        * exclude (year_slip_possible),
        case when year_slip_possible then
            [p for p in range(1, 5) if substr(birth_year_digits, p, 1) <> substr(id_birth_year_digits, p, 1)]
        end as year_positions_differ
    from birth_years
),

derived as (
    select
        * exclude (birth_year_digits, id_birth_year_digits, year_positions_differ),
        -- someone else's id: its birth date is no slip of the record's (not equal, not a day/month
        -- swap, not two of year/month/day equal with a differing year one typed digit or one swap
        -- of neighbouring digits away: linkage.dates.one_slip_apart)
        coalesce(
            not (
                birth_date = id_birth_date
                or (
                    year(birth_date) = year(id_birth_date)
                    and (month(birth_date) = month(id_birth_date) or day(birth_date) = day(id_birth_date)
                         or (month(birth_date) = day(id_birth_date) and day(birth_date) = month(id_birth_date)))
                )
                or (
                    month(birth_date) = month(id_birth_date) and day(birth_date) = day(id_birth_date)
                    and (
                        len(year_positions_differ) = 1
                        or (
                            len(year_positions_differ) = 2
                            and year_positions_differ[2] = year_positions_differ[1] + 1
                            and substr(birth_year_digits, year_positions_differ[1], 1)
                                = substr(id_birth_year_digits, year_positions_differ[2], 1)
                            and substr(birth_year_digits, year_positions_differ[2], 1)
                                = substr(id_birth_year_digits, year_positions_differ[1], 1)
                        )
                    )
                )
            ),
            false
        ) as id_foreign,
        case
            when length(id_number) = 18 then substr(id_number, 7, 8)
            when length(id_number) = 15 then '19' || substr(id_number, 7, 6)
        end as id_birth_digits
    from year_differences
),

link_records as (
    select
        record_key::bigint as record_key,
        source,
        record_id,
        name,
        name_script,
        name_pinyin,
        name_pinyin_sorted,
        replace(name_pinyin, ' ', '') as pinyin_compact,
        -- a han name's given syllables before its surname (Wei Zhuge), a latin name's last word first
        case
            when name_script = 'han' then
                case when surname is not null then
                    array_to_string(list_slice(words, n_surname + 1, len(words)), '')
                    || array_to_string(list_slice(words, 1, n_surname), '')
                end
            else
                case when len(words) > 1 then
                    words[-1] || array_to_string(list_slice(words, 1, len(words) - 1), '')
                end
        end as pinyin_reordered,
        surname_pinyin,
        id_number,
        coalesce(id_valid, false) as id_valid,
        coalesce(id_valid, false) and not id_foreign as id_own,
        coalesce(birth_date, id_birth_date) as birth,
        phone,
        case when regexp_full_match(id_birth_digits, '\p{Nd}{8}') then id_birth_digits end as id_birth_part,
        substr(hukou_region, 1, 6) as hukou_region6,
        substr(residence_region, 1, 6) as residence_region6,
        substr(id_region, 1, 6) as id_region6,
        substr(hukou_address, 1, 4) as hukou_address,
        substr(residence_address, 1, 4) as residence_address
    from derived
)

select * from link_records
