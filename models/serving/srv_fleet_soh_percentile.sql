{{ config(
    alias='fleet_soh_percentile',
    partition_by='toYYYYMM(month_start)',
    order_by='(vehicle_model, age_band, month_start)',
    ttl=serving_ttl('month_start'),
) }}
-- ads_fleet_soh_percentile as exported to the lake (by month_start); keys cast to non-null types
select
    cast(month_start as date) as month_start,
    cast(vehicle_model as varchar) as vehicle_model,
    cast(age_band as varchar) as age_band,
    * except (month_start, vehicle_model, age_band, month)
from {{ lake_table('ads_fleet_soh_percentile') }}
