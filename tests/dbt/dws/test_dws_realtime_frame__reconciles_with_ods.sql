-- Fails for every collect_date where the rows of the landing files (their footers, as
-- ods_landing_file read them, valid files only) differ from the ODS rows, or the ODS rows differ
-- from the DWS rows plus the rejected source rows of the quarantine: landing = ODS = DWS +
-- rejected, per day. With batch_dates set, only the dates present in the DWS are compared
-- (other ODS dates may legitimately be unprocessed yet).

with

landing as (
    select
        partition_date as collect_date,
        sum(row_count) as landing_rows
    from {{ ref('ods_landing_file') }}
    where table_name = 'gbt32960_realtime' and is_valid
    group by partition_date
),

ods as (
    select
        collect_date,
        count(*) as ods_rows
    from {{ ref('ods_gbt32960_realtime') }}
    group by collect_date
),

dws as (
    select
        collect_date,
        count(*) as dws_rows
    from {{ ref('dws_realtime_frame') }}
    group by collect_date
),

rejected as (
    select
        collect_date,
        count(distinct source_file || '#' || cast(source_row_number as {{ str_type() }})) as rejected_rows
    from {{ ref('dws_quarantine') }}
    where action = 'reject_row'
    group by collect_date
),

{% if batch_dates_list() | length > 0 -%}
processed_dates as (
    select collect_date from dws
    union
    select collect_date from rejected
),
{%- endif %}

compared as (
    select
        coalesce(ods.collect_date, landing.collect_date) as collect_date,
        coalesce(landing.landing_rows, 0) as landing_rows,
        coalesce(ods.ods_rows, 0) as ods_rows,
        coalesce(dws.dws_rows, 0) as dws_rows,
        coalesce(rejected.rejected_rows, 0) as rejected_rows
    from ods
    full outer join landing on ods.collect_date = landing.collect_date
    left join dws on ods.collect_date = dws.collect_date
    left join rejected on ods.collect_date = rejected.collect_date
    {% if batch_dates_list() | length > 0 -%}
        where coalesce(ods.collect_date, landing.collect_date) in (
            select processed_dates.collect_date from processed_dates
        )
    {%- endif %}
)

select *
from compared
where
    landing_rows <> ods_rows
    or ods_rows <> dws_rows + rejected_rows
