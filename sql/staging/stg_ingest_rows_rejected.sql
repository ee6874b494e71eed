-- stg_ingest_rows_rejected
-- Purpose: apply ingest's row rules to every row that could be read from an extract:
--   a row needs a record_id that is not an identity number (decided per source, from the whole
--   column: see id_number_sources; macro identity_number_form,
--   linkage.id_numbers.define_identity_number_macro), and a name or an id number (placeholders such as 无/不详
--   count as empty: the words standardization drops, $name_placeholders from
--   linkage.names.PLACEHOLDERS, and a name with no Han or Latin letter or an id with no
--   digit or letter, which standardization also leaves empty); a record_id repeated inside one source keeps its freshest row
--   (latest updated_at, then the later file, then the later row) and marks the others
--   superseded, naming the row that replaced them. A reason starts with where the clerk
--   finds the row in the file, and the data row beside it (macros row_place_zh and
--   row_place_en, flows/ingest.py: 文件第6行(数据第5行), Excel 第6行(数据第5行)).
-- Grain: one row per readable input row that a rule rejects, with its reason. Every
--   other row of ingest_rows is accepted as it is: raw_records is ingest_rows less these
--   rows, so the ten million accepted rows are written once, not copied through here.
-- Input: ingest_rows (registered by flows/ingest.py), all canonical fields as text, with
--   row_number (the data row) and file_row (the line, or the sheet's Excel row);
--   source_formats (source, format): each source's file format, which says what file_row
--   counts; sheet_rows (source, file, sheet, first_row, last_row): the row_number range of
--   each sheet of a workbook whose data runs over several sheets (empty for most nights),
--   so that a reason names the sheet of the row (工作表 Sheet2 第13行).
-- No CTE here holds every row: DuckDB materializes a CTE that two others read, and one of the
-- night's rows with all their columns copied the whole city (13 s of rules at 10M rows, 5 s
-- without).
-- Each CTE reads ingest_rows for the few columns it needs and keeps only the rows it finds.

-- Every published file names a row by its record id: an identity number there would be
-- published in full city-wide. Only record ids of the form of an identity number (15 or 18
-- digits around a real birth date) take part; for most rows the form test stops at the length.
with record_id_forms as (
    select
        ingest_position,
        source,
        identity_number_form(record_id) as record_id_form,
        -- The row's own id number as its record id: an identity number whatever the source's
        -- other record ids are (a 15-digit record id against its 18-digit upgrade, too; and
        -- one typed with one character wrong, a typo'd check character most often: the
        -- other 17 characters are still the person's id, and a source of record numbers
        -- would publish it in full).
        coalesce(
            upper(record_id) = upper(id_number)
            or (strlen(record_id) = 15 and strlen(id_number) = 18
                and record_id = substr(id_number, 1, 6) || substr(id_number, 9, 9))
            or own_id_number_mistyped(record_id, id_number),
            false
        ) as record_id_is_own_id_number
    from ingest_rows
    -- A typo in the birth date (month 13) takes the record id out of the form: the row's own
    -- id number mistyped is taken all the same.
    where identity_number_form(record_id) is not null or own_id_number_mistyped(record_id, id_number)
),

-- A source whose record ids are identity numbers, decided from the evidence of its whole
-- column, not row by row. Among its 18-character record ids of the form, real identity numbers
-- pass the check character almost always (a typo aside); other numbers of that layout (region
-- code + date + sequence, 330602 20231201 0001, as many government systems number their
-- records) pass it about once in 11. At least half passing (and at least one) says identity
-- numbers: a source of record numbers reaches half by chance with a few such ids at most
-- (1 of 2: 17%; 5 of 10: 0.1%), and then loses only those few rows, while a source of identity
-- numbers stays above half unless nearly every other one has a typo. One such id that passes
-- is an identity number: a lone id must not be published for want of company.
id_number_sources as (
    select source
    from record_id_forms
    group by source
    having count(*) filter (where record_id_form = 'id18') >= 1
        and 2 * count(*) filter (where record_id_form = 'id18')
            >= count(*) filter (where record_id_form in ('id18', 'id18_wrong_check'))
),

-- In such a source every record id of the form goes: the 18-character ones whatever their
-- check character, and the 15-digit ones; elsewhere none does (a record number that passes
-- the check by chance is the department's own number, kept).
record_ids_id_numbers as (
    select
        ingest_position,
        record_id_form = 'id18' or record_id_is_own_id_number as record_id_plainly_id_number
    from record_id_forms
    where record_id_is_own_id_number or source in (select source from id_number_sources)
),

-- The rows a rule rejects, and why.
rule_problems as (
    select * from (
        select
            r.ingest_position, r.source, r.file, r.row_number, r.file_row, r.record_id, r.source_order, r.file_order,
            i.record_id_plainly_id_number,
            case
                when r.record_id is null then 'missing_record_id'
                when i.ingest_position is not null then 'record_id_is_id_number'
                when (r.name is null
                      or list_contains($name_placeholders, upper(regexp_replace(r.name, '\s+', '', 'g')))
                      or contains(r.name, '测试') or contains(r.name, '某某')
                      or not regexp_matches(r.name, '[\p{Han}A-Za-zＡ-Ｚａ-ｚ]'))
                     and (r.id_number is null
                      or regexp_full_match(r.id_number, '(无|不详|[0\-/\s]+)')
                      or list_contains($name_placeholders, upper(regexp_replace(r.id_number, '\s+', '', 'g')))
                      or not regexp_matches(r.id_number, '[0-9A-Za-z０-９Ａ-Ｚａ-ｚ]'))
                    then 'no_name_or_id'
            end as rule_problem
        from ingest_rows r
        left join record_ids_id_numbers i using (ingest_position)
    )
    where rule_problem is not null
),

-- Only record ids seen more than once need ranking; most are unique, so the window
-- runs over a small share of the rows. Rows a rule rejected take no part: they neither
-- replace a row nor are replaced.
repeated_ids as (
    select source, record_id
    from ingest_rows
    anti join rule_problems using (ingest_position)
    group by source, record_id
    having count(*) > 1
),

repeated_rows as (
    select
        u.ingest_position, u.source, u.file, u.row_number, u.file_row, u.record_id, u.source_order, u.file_order,
        u.updated_at,
        -- A time's UTC offset (JSON APIs write +08:00, Spark's Parquet timestamps +00:00) is
        -- set aside: one source's system writes one offset, and with it no format below
        -- parsed, so row order alone decided and a stale row replaced a fresh one.
        try_strptime(regexp_replace(u.updated_at, '(\d:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|UTC|[+-]\d{2}(?::?\d{2})?)$', '\1'),
                     ['%Y-%m-%d %H:%M:%S', '%Y-%m-%d %H:%M:%S.%f', '%Y-%m-%dT%H:%M:%S', '%Y-%m-%dT%H:%M:%S.%f',
                      '%Y-%m-%d %H:%M', '%Y-%m-%d', '%Y/%m/%d %H:%M:%S', '%Y/%m/%d %H:%M', '%Y/%m/%d', '%Y%m%d%H%M%S',
                      '%Y%m%d', '%Y.%m.%d', '%Y年%m月%d日']) as updated_at_parsed
    from ingest_rows u
    semi join repeated_ids r on u.source = r.source and u.record_id = r.record_id
    anti join rule_problems p on p.ingest_position = u.ingest_position
),

ranked as (
    select
        * exclude (updated_at_parsed),
        row_number() over freshness as freshness_rank,
        first_value(file) over freshness as kept_file,
        first_value(row_number) over freshness as kept_row_number,
        first_value(file_row) over freshness as kept_file_row,
        first_value(updated_at) over freshness as kept_updated_at
    from repeated_rows
    window freshness as (
        partition by source, record_id
        order by updated_at_parsed desc nulls last, file_order desc, row_number desc
    )
),

rejected as (
    select
        ingest_position, source, file, row_number, file_row, record_id, source_order, file_order,
        rule_problem as reason_code,
        case rule_problem
            when 'missing_record_id' then '缺少记录编号，无法追溯到原始记录'
            when 'record_id_is_id_number' then (case when record_id_plainly_id_number then '记录编号是身份证号码'
                else '记录编号具有身份证号码的格式(本来源的记录编号是身份证号码)' end)
                || '，不能随结果公开；请在导出中改用本部门自己的记录编号'
            when 'no_name_or_id' then '姓名和身份证号都为空或为占位值(如 无、不详)，无法识别是谁'
        end as reason_zh,
        case rule_problem
            when 'missing_record_id' then 'the record id is empty'
            when 'record_id_is_id_number' then (case when record_id_plainly_id_number then 'the record id is an identity number'
                else 'the record id has the form of an identity number (this source''s record ids are identity numbers)' end)
                || ', which may not be published; export the department''s own record number instead'
            when 'no_name_or_id' then 'neither a name nor an id number'
        end as reason_en
    from rule_problems

    union all

    select
        r.ingest_position, r.source, r.file, r.row_number, r.file_row, r.record_id, r.source_order, r.file_order,
        'superseded_duplicate_record_id' as reason_code,
        '记录编号 ' || r.record_id || ' 在本来源中重复，已被 ' || r.kept_file || ' '
        || row_place_zh(f.format, k.sheet, r.kept_file_row, r.kept_row_number, '更新时间 ' || r.kept_updated_at)
        || '取代' as reason_zh,
        'superseded by the fresher row with the same record id at '
        || row_place_en(f.format, k.sheet, r.kept_file_row, r.kept_row_number) || ' of ' || r.kept_file as reason_en
    from ranked r
    left join source_formats f on f.source = r.source
    left join sheet_rows k
        on k.source = r.source and k.file = r.kept_file and r.kept_row_number between k.first_row and k.last_row
    where r.freshness_rank > 1
),

-- Every reason starts with where the row is: its line or Excel row (and its sheet, in a
-- workbook with several data sheets, also kept as `sheet` for the department's report), and
-- its data row.
located as (
    select
        r.ingest_position, r.source, r.file, r.row_number, r.file_row, r.record_id, r.source_order, r.file_order,
        r.reason_code, s.sheet,
        row_place_zh(f.format, s.sheet, r.file_row, r.row_number, null) || '：' || r.reason_zh
        || ' (' || row_place_en(f.format, s.sheet, r.file_row, r.row_number) || ': ' || r.reason_en || ')' as reason
    from rejected r
    left join source_formats f on f.source = r.source
    left join sheet_rows s
        on s.source = r.source and s.file = r.file and r.row_number between s.first_row and s.last_row
)

select * from located
