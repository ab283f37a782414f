{{ config(
    alias='soh_watchlist',
    materialized='table',
    order_by='(vin)',
) }}
-- ads_soh_watchlist (no date: the vehicles to act on now), replaced whole on every publish
select
    cast(vin as varchar) as vin,
    * except (vin)
from {{ lake_table('ads_soh_watchlist', partitioned=false) }}
