{{ config(
    alias='soh_by_window',
    partition_by='toYYYYMM(window_start)',
    order_by='(scope, scope_key, window_type, window_start)',
    ttl=serving_ttl('window_start'),
) }}
-- ads_soh_by_window as exported to the lake (by month of window_start: a week starting on the
-- last days of a month is in that month's folder); keys cast to non-null types
select
    cast(window_type as varchar) as window_type,
    cast(window_start as date) as window_start,
    cast(scope as varchar) as scope,
    cast(scope_key as varchar) as scope_key,
    * except (window_type, window_start, scope, scope_key, month)
from {{ lake_table('ads_soh_by_window') }}
