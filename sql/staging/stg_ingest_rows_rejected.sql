-- stg_ingest_rows_rejected
-- Purpose: apply ingest's row rules to every row that could be read from an extract:
--   a row needs a record_id, and a name or an id number (placeholders such as 无/不详
--   count as empty: the words standardization drops, $name_placeholders from
--   linkage.names.PLACEHOLDERS, and a name with no Han or Latin letter or an id with no
--   digit or letter, which standardization also leaves empty); a record_id repeated inside one source keeps its freshest row
--   (latest updated_at, then the later file, then the later row) and marks the others
--   superseded, naming the row that replaced them.
-- Grain: one row per readable input row that a rule rejects, with its reason. Every
--   other row of ingest_rows is accepted as it is: raw_records is ingest_rows less these
--   rows, so the ten million accepted rows are written once, not copied through here.
-- Input: ingest_rows (registered by flows/ingest.py), all canonical fields as text.
with readable as (
    select * from ingest_rows
),

flagged as (
    select
        *,
        case
            when record_id is null then 'missing_record_id'
            when (name is null
                  or list_contains($name_placeholders, upper(regexp_replace(name, '\s+', '', 'g')))
                  or contains(name, '测试') or contains(name, '某某')
                  or not regexp_matches(name, '[\p{Han}A-Za-zＡ-Ｚａ-ｚ]'))
                 and (id_number is null
                  or regexp_full_match(id_number, '(无|不详|[0\-/\s]+)')
                  or list_contains($name_placeholders, upper(regexp_replace(id_number, '\s+', '', 'g')))
                  or not regexp_matches(id_number, '[0-9A-Za-z０-９Ａ-Ｚａ-ｚ]'))
                then 'no_name_or_id'
        end as rule_problem
    from readable
),

usable as (
    select * exclude (rule_problem) from flagged where rule_problem is null
),

-- Only record ids seen more than once need ranking; most are unique, so the window
-- runs over a small share of the rows.
repeated_ids as (
    select source, record_id from usable group by source, record_id having count(*) > 1
),

repeated_rows as (
    select
        u.*,
        try_strptime(u.updated_at, ['%Y-%m-%d %H:%M:%S', '%Y-%m-%d %H:%M:%S.%f', '%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M',
                                    '%Y-%m-%d', '%Y/%m/%d %H:%M:%S', '%Y/%m/%d %H:%M', '%Y/%m/%d', '%Y%m%d%H%M%S',
                                    '%Y%m%d', '%Y.%m.%d', '%Y年%m月%d日']) as updated_at_parsed
    from usable u
    semi join repeated_ids r on u.source = r.source and u.record_id = r.record_id
),

ranked as (
    select
        * exclude (updated_at_parsed),
        row_number() over freshness as freshness_rank,
        first_value(file) over freshness as kept_file,
        first_value(row_number) over freshness as kept_row_number,
        first_value(updated_at) over freshness as kept_updated_at
    from repeated_rows
    window freshness as (
        partition by source, record_id
        order by updated_at_parsed desc nulls last, file_order desc, row_number desc
    )
),

rejected as (
    select
        ingest_position, source, file, row_number, record_id, source_order, file_order,
        rule_problem as reason_code,
        case rule_problem
            when 'missing_record_id' then '缺少记录编号，无法追溯到原始记录 (the record id is empty)'
            when 'no_name_or_id' then '姓名和身份证号都为空或为占位值(如 无、不详)，无法识别是谁 (neither a name nor an id number)'
        end as reason
    from flagged
    where rule_problem is not null

    union all

    select
        ingest_position, source, file, row_number, record_id, source_order, file_order,
        'superseded_duplicate_record_id' as reason_code,
        '记录编号 ' || record_id || ' 在本来源中重复，已被 ' || kept_file || ' 第' || kept_row_number || '行'
        || coalesce('(更新时间 ' || kept_updated_at || ')', '') || '取代 (superseded by the fresher row '
        || kept_row_number || ' of ' || kept_file || ' with the same record id)' as reason
    from ranked
    where freshness_rank > 1
)

select * from rejected
