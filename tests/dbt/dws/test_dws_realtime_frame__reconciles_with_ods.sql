-- Fails for every collect_date where the ODS rows differ from the DWS rows plus the rejected
-- source rows of the quarantine. With batch_dates set, only the dates present in the DWS are
-- compared (other ODS dates may legitimately be unprocessed yet).

with

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
        ods.collect_date,
        ods.ods_rows,
        coalesce(dws.dws_rows, 0) as dws_rows,
        coalesce(rejected.rejected_rows, 0) as rejected_rows
    from ods
    left join dws on ods.collect_date = dws.collect_date
    left join rejected on ods.collect_date = rejected.collect_date
    {% if batch_dates_list() | length > 0 -%}
        where ods.collect_date in (select processed_dates.collect_date from processed_dates)
    {%- endif %}
)

select *
from compared
where ods_rows <> dws_rows + rejected_rows
