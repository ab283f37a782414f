-- Fails when a vehicle master row is neither in dws_vehicle nor in dws_vehicle_reject (or in
-- both): every master row is accounted for.

with

ods as (
    select count(*) as n from {{ ref('ods_vehicle_master') }}
),

kept as (
    select count(*) as n from {{ ref('dws_vehicle') }}
),

rejected as (
    select count(*) as n from {{ ref('dws_vehicle_reject') }}
)

select
    ods.n as ods_rows,
    kept.n as kept_rows,
    rejected.n as rejected_rows
from ods
cross join kept
cross join rejected
where ods.n <> kept.n + rejected.n
