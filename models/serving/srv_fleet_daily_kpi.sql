{{ config(
    alias='fleet_daily_kpi',
    partition_by='toYYYYMM(date)',
    order_by='(vehicle_model, date)',
    ttl=serving_ttl('date'),
) }}
-- ads_fleet_daily_kpi as exported to the lake; keys cast to non-null types (sort key)
select
    cast(date as date) as date,
    cast(vehicle_model as varchar) as vehicle_model,
    * except (date, vehicle_model, month)
from {{ lake_table('ads_fleet_daily_kpi') }}
