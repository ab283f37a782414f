{{ config(
    alias='vehicle_soh',
    partition_by='toYYYYMM(as_of_date)',
    order_by='(vin, as_of_date)',
    ttl=serving_ttl('as_of_date'),
) }}
-- ads_vehicle_soh as exported to the lake; keys cast to non-null types (sort key)
select
    cast(vin as varchar) as vin,
    cast(as_of_date as date) as as_of_date,
    * except (vin, as_of_date, month)
from {{ lake_table('ads_vehicle_soh') }}
