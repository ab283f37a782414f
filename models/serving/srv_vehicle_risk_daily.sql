{{ config(
    alias='vehicle_risk_daily',
    partition_by='toYYYYMM(date)',
    order_by='(vin, date)',
    ttl=serving_ttl('date'),
) }}
-- ads_vehicle_risk_daily as exported to the lake; keys cast to non-null types (sort key)
select
    cast(vin as varchar) as vin,
    cast(date as date) as date,
    * except (vin, date, month)
from {{ lake_table('ads_vehicle_risk_daily') }}
