-- Capacity observations (SOH labels) from both directions of the coulomb count:
--   charge:    one row per SOH-eligible charge segment (and per segment missing only get_charge's
--              SOC window or ΔSOC threshold with soh_label_min_delta_soc points):
--              C = offset-calibrated |I| dt / (delta SOC / 100);
--   discharge: one row per discharge window, the trips of one vehicle and day between two
--              charges, spanning at least soh_label_min_delta_soc points of SOC:
--              C = offset-calibrated net discharged Ah (out - regenerated) / (SOC drop / 100).
--              A vehicle that drives before its first charge has a label on its first day, and
--              the BMS's SOC-counter gain error biases a discharge label the opposite way to a
--              partial charge's (the SOH model uses both).
-- SOH_obs = C / rated capacity.
-- A table rebuilt on every run (one narrow row per label, small next to the frames) so that
-- every observation uses the current-sensor offset as known today: the offset estimate sharpens
-- as charge-complete frames accumulate. Observations failing a capacity screen are kept with
-- capacity_reject_reason; the temperature correction is learnt from the data by the SOH model
-- (dwd_soh_model) rather than assumed, and applied there.

{%- set t_min = var('soh_temp_min_c') -%}
{%- set t_max = var('soh_temp_max_c') %}

with

throughput as (
    -- every segment (eligible or not), with the vehicle's charged Ah up to and including it
    select
        s.vin,
        s.start_time,
        -- typed: an empty segment table (no charging yet) has an untyped date column
        cast(s.start_date as date) as start_date,
        s.end_time,
        s.duration_s,
        s.charger_type,
        s.start_soc_pct,
        s.end_soc_pct,
        s.delta_soc_pct,
        s.charged_ah,
        s.charging_s,
        s.label_ah,
        s.label_delta_soc_pct,
        s.label_charging_s,
        s.label_ah is not null as is_plateau_cut,
        s.mean_c_rate,
        s.max_c_rate,
        s.min_temp_c,
        s.mean_temp_c,
        s.max_temp_c,
        s.start_odometer_km,
        s.is_soh_eligible,
        s.ineligible_reason,
        s.end_reason,
        s.start_voltage_v,
        s.start_current_a,
        s.start_temp_c,
        sum(s.charged_ah) over (
            partition by s.vin order by s.start_time rows between unbounded preceding and current row
        ) as cum_ah
    from {{ ref('dwd_charge_segment') }} as s
),

segments as (
    -- BMS SOC is a coulomb count recalibrated at a full charge: its error grows with the charge
    -- throughput since the vehicle's last full charge
    select
        t.*,
        t.cum_ah - t.charged_ah - max(case when t.end_soc_pct >= 100 then t.cum_ah end) over (
            partition by t.vin order by t.start_time rows between unbounded preceding and 1 preceding
        ) as ah_since_full_charge
    from throughput as t
),

charge_labels as (
    select
        'charge' as observation_type,
        sg.vin,
        sg.start_time,
        sg.start_date,
        sg.end_time,
        sg.duration_s,
        v.vehicle_model,
        v.chemistry,
        v.rated_capacity_ah,
        sg.charger_type,
        sg.start_soc_pct,
        sg.end_soc_pct,
        -- the label's interval (dwd_charge_segment.label_*): from the first SOC change to the
        -- first frame of the final SOC plateau, so that Ah drawn while the display is held (a
        -- top-up frozen at 97-99 then a jump to 100, a CV tail at 100) do not enter a label
        -- whose ΔSOC ends at the held value (nor a CV tail at 100). Measured: cutting charges
        -- that end at 100 too, and keeping the SOH model's full-charge term for them, gave the
        -- lowest SOH error on baseline, topup_hold and sensor_bias (README, Scenarios). The
        -- whole segment where the interval is unknown (SOC moved by fewer than 2 points).
        case when sg.is_plateau_cut then sg.label_delta_soc_pct else sg.delta_soc_pct end as delta_soc_pct,
        sg.end_soc_pct >= 100 as is_full_charge,
        sg.is_plateau_cut,
        case when sg.is_plateau_cut then sg.label_ah else sg.charged_ah end as measured_ah,
        o.current_offset_a,
        -- the Hall sensor reads I + offset; charging current is negative, so |I| read is short
        -- by the offset for every second the charge integral covers
        case when sg.is_plateau_cut then sg.label_ah else sg.charged_ah end
        + coalesce(o.current_offset_a, 0)
        * case when sg.is_plateau_cut then sg.label_charging_s else sg.charging_s end / 3600
            as measured_ah_calibrated,
        sg.mean_c_rate,
        sg.max_c_rate,
        sg.min_temp_c,
        sg.mean_temp_c,
        sg.max_temp_c,
        sg.start_odometer_km,
        sg.ah_since_full_charge,
        0 as soc_discontinuity_pct,
        1 as run_count
    from segments as sg
    inner join {{ ref('dws_vehicle') }} as v on sg.vin = v.vin
    left join {{ ref('dwd_vehicle_current_offset') }} as o on sg.vin = o.vin
    -- SOH-eligible segments, and those that miss only the SOC window or the ΔSOC threshold of
    -- get_charge but still span soh_label_min_delta_soc: a narrower window is a noisier label,
    -- which the SOH model weights by its ΔSOC instead of dropping
    where
        sg.is_soh_eligible
        or (
            sg.ineligible_reason in ('start_soc_high', 'end_soc_low', 'delta_soc_small')
            and sg.delta_soc_pct >= {{ var('soh_label_min_delta_soc') }}
        )
),

events as (
    -- trips and charge segments in time order: the charges a vehicle has had before each trip,
    -- and its charged Ah since the last full charge
    select
        t.vin,
        t.start_time,
        cast(t.start_date as date) as start_date,
        t.end_time,
        t.duration_s,
        t.start_soc_pct,
        t.end_soc_pct,
        t.ah_out - t.ah_regen as net_ah,
        t.min_temp_c,
        t.mean_temp_c,
        t.max_temp_c,
        t.start_odometer_km,
        0 as is_charge,
        cast(0 as double) as charged_ah,
        false as is_full
    from {{ ref('dwd_drive_trip') }} as t
    union all
    select
        s.vin,
        s.start_time,
        s.start_date,
        s.end_time,
        s.duration_s,
        s.start_soc_pct,
        s.end_soc_pct,
        cast(null as double) as net_ah,
        s.min_temp_c,
        s.mean_temp_c,
        s.max_temp_c,
        s.start_odometer_km,
        1 as is_charge,
        s.charged_ah,
        s.end_soc_pct >= 100 as is_full
    from throughput as s
),

ordered as (
    select
        e.*,
        sum(e.is_charge) over (
            partition by e.vin order by e.start_time rows between unbounded preceding and current row
        ) as charge_no,
        sum(e.charged_ah) over (
            partition by e.vin order by e.start_time rows between unbounded preceding and current row
        ) as cum_ah
    from events as e
),

trip_runs as (
    select
        o.*,
        -- charged Ah at the end of the last full charge so far (null before the first)
        max(case when o.is_full then o.cum_ah end) over (
            partition by o.vin order by o.start_time rows between unbounded preceding and current row
        ) as full_cum_ah
    from ordered as o
),

windows as (
    -- one discharge window per vehicle, day and stretch between two charges
    select
        r.vin,
        r.start_date,
        r.charge_no,
        min(r.start_time) as start_time,
        max(r.end_time) as end_time,
        sum(r.duration_s) as driving_s,
        {{ first_non_null('r.start_soc_pct', 'r.start_time') }} as start_soc_pct,
        {{ last_non_null('r.end_soc_pct', 'r.start_time') }} as end_soc_pct,
        -- the SOC the trips used one by one: it differs from the window's drop when the BMS
        -- re-anchored its SOC while the vehicle was parked between two trips
        sum(r.start_soc_pct - r.end_soc_pct) as trips_soc_used_pct,
        -- fixed point: a float sum in whatever order the rows come would differ from run to run
        -- in its last bits
        {{ exact_sum('r.net_ah', 6) }} as net_ah,
        min(r.min_temp_c) as min_temp_c,
        {{ exact_sum('r.mean_temp_c * r.duration_s', 3) }}
        / nullif(sum(case when r.mean_temp_c is not null then r.duration_s end), 0) as mean_temp_c,
        max(r.max_temp_c) as max_temp_c,
        {{ first_non_null('r.start_odometer_km', 'r.start_time') }} as start_odometer_km,
        min(r.cum_ah - r.full_cum_ah) as ah_since_full_charge,
        count(*) as run_count
    from trip_runs as r
    where r.is_charge = 0
    group by r.vin, r.start_date, r.charge_no
),

discharge_labels as (
    select
        'discharge' as observation_type,
        w.vin,
        w.start_time,
        w.start_date,
        w.end_time,
        {{ epoch_seconds('w.end_time') }} - {{ epoch_seconds('w.start_time') }} as duration_s,
        v.vehicle_model,
        v.chemistry,
        v.rated_capacity_ah,
        'none' as charger_type,
        w.start_soc_pct,
        w.end_soc_pct,
        w.start_soc_pct - w.end_soc_pct as delta_soc_pct,
        false as is_full_charge,
        false as is_plateau_cut,
        w.net_ah as measured_ah,
        o.current_offset_a,
        -- discharge current is positive: the Ah read is long by the offset for every second
        w.net_ah - coalesce(o.current_offset_a, 0) * w.driving_s / 3600 as measured_ah_calibrated,
        (w.net_ah - coalesce(o.current_offset_a, 0) * w.driving_s / 3600)
        / nullif(w.driving_s / 3600, 0) / v.rated_capacity_ah as mean_c_rate,
        cast(null as double) as max_c_rate,
        w.min_temp_c,
        w.mean_temp_c,
        w.max_temp_c,
        w.start_odometer_km,
        w.ah_since_full_charge,
        abs(w.trips_soc_used_pct - (w.start_soc_pct - w.end_soc_pct)) as soc_discontinuity_pct,
        w.run_count
    from windows as w
    inner join {{ ref('dws_vehicle') }} as v on w.vin = v.vin
    left join {{ ref('dwd_vehicle_current_offset') }} as o on w.vin = o.vin
    where w.start_soc_pct - w.end_soc_pct >= {{ var('soh_label_min_delta_soc') }}
),

resistance_trips as (
    -- each trip's pack resistance, R = -sum(dV dI) / sum(dI^2) over its consecutive frames, and
    -- the temperature it was driven at
    select
        t.vin,
        v.chemistry,
        {{ epoch_seconds('t.start_time') }} as t_s,
        -- rounded: engines' ln and exp differ in the last bit, and the SOH model's version is
        -- a hash of what it learnt from these labels (Spark and DuckDB must agree on it)
        round(ln(-t.ir_sum_dv_di / t.ir_sum_di2), 12) as ln_r,
        1.0 / (t.mean_temp_c + 273.15) - 1.0 / 298.15 as inv_t
    from {{ ref('dwd_drive_trip') }} as t
    inner join {{ ref('dws_vehicle') }} as v on t.vin = v.vin
    where
        t.ir_sum_di2 >= {{ var('soh_ocv_min_trip_di2') }}
        and t.ir_sum_dv_di < 0
        and t.mean_temp_c is not null
),

arrhenius as (
    -- how the resistance changes with temperature, per chemistry, from within-vehicle variation
    -- (ln R = a_vehicle + k (1/T - 1/298.15)): a charge at another temperature than the trips
    -- that measured its vehicle's resistance
    select
        c.chemistry,
        -- sums in fixed point, here and below: a float sum in whatever order the rows come
        -- differs from run to run in its last bits, and so would a retrained SOH model
        {{ exact_sum('c.x * c.y', 18) }} / nullif({{ exact_sum('c.x * c.x', 18) }}, 0) as k
    from (
        select
            r.chemistry,
            r.inv_t - cast(sum(cast(r.inv_t as decimal(38, 15))) over (partition by r.vin) as double)
            / count(*) over (partition by r.vin) as x,
            r.ln_r - cast(sum(cast(r.ln_r as decimal(38, 12))) over (partition by r.vin) as double)
            / count(*) over (partition by r.vin) as y
        from resistance_trips as r
    ) as c
    group by c.chemistry
),

ah_events as (
    -- every trip and charge with the Ah it put into the pack (offset-calibrated: a trip's net
    -- discharge counts negative), its first frame, and the temperatures it ran at
    select
        t.vin,
        t.start_time,
        t.end_time,
        cast(null as {{ str_type() }}) as charger_type,
        false as is_full,
        -(t.ah_out - t.ah_regen - coalesce(o.current_offset_a, 0) * t.duration_s / 3600) as ah_in,
        t.start_voltage_v,
        t.start_current_a,
        t.start_temp_c,
        t.min_temp_c,
        t.mean_temp_c,
        t.max_temp_c
    from {{ ref('dwd_drive_trip') }} as t
    left join {{ ref('dwd_vehicle_current_offset') }} as o on t.vin = o.vin
    union all
    select
        s.vin,
        s.start_time,
        s.end_time,
        s.charger_type,
        s.end_soc_pct >= 100 and s.end_reason <> 'end_of_data' as is_full,
        s.charged_ah + coalesce(o.current_offset_a, 0) * s.charging_s / 3600 as ah_in,
        s.start_voltage_v,
        s.start_current_a,
        s.start_temp_c,
        s.min_temp_c,
        s.mean_temp_c,
        s.max_temp_c
    from segments as s
    left join {{ ref('dwd_vehicle_current_offset') }} as o on s.vin = o.vin
),

ah_counted as (
    -- the vehicle's own Ah counter (no BMS in it) at each event's start, and its rest before
    select
        e.*,
        coalesce(cast(sum(cast(e.ah_in as decimal(38, 6))) over (
            partition by e.vin order by e.start_time
            rows between unbounded preceding and 1 preceding
        ) as double), 0) as ah_before,
        lag(e.end_time) over (partition by e.vin order by e.start_time) as prev_end_time
    from ah_events as e
),

rested_starts as (
    -- events that start after a rest: their first frame's voltage is near the OCV
    select c.*
    from ah_counted as c
    inner join {{ ref('dws_vehicle') }} as v on c.vin = v.vin
    where
        {{ 'true' if var('soh_ocv_labels') else 'false' }}
        and c.prev_end_time is not null
        and c.start_voltage_v is not null
        and c.start_current_a is not null
        and c.start_temp_c is not null
        and abs(c.start_current_a) <= {{ var('soh_ocv_max_c_rate') }} * v.rated_capacity_ah
        and (c.charger_type is not null or {{ 'true' if var('soh_ocv_trip_anchors') else 'false' }})
        and {{ epoch_seconds('c.start_time') }} - {{ epoch_seconds('c.prev_end_time') }}
        >= 60 * {{ var('soh_ocv_min_rest_min') }}
),

ocv_resistance as (
    -- the vehicle's resistance at the start's temperature, from its trips of the
    -- soh_ocv_resistance_days before it
    select
        c.vin,
        c.start_time,
        round(exp(
            {{ exact_sum('r.ln_r - a.k * r.inv_t', 12) }} / count(*)
            + a.k * (1.0 / (c.start_temp_c + 273.15) - 1.0 / 298.15)
        ), 12) as resistance_ohm
    from rested_starts as c
    inner join {{ ref('dws_vehicle') }} as v on c.vin = v.vin
    inner join arrhenius as a on v.chemistry = a.chemistry
    inner join resistance_trips as r
        on
            c.vin = r.vin
            and r.t_s <= {{ epoch_seconds('c.start_time') }}
            and r.t_s > {{ epoch_seconds('c.start_time') }} - 86400 * {{ var('soh_ocv_resistance_days') }}
    group by c.vin, c.start_time, c.start_temp_c, a.k
),

ocv_curve as (
    select
        o.chemistry,
        o.soc_pct as soc_lo,
        o.ocv_v as ocv_lo,
        lead(o.soc_pct) over (partition by o.chemistry order by o.soc_pct) as soc_hi,
        lead(o.ocv_v) over (partition by o.chemistry order by o.soc_pct) as ocv_hi
    from {{ ref('ocv_soc_curve') }} as o
),

ocv_read as (
    -- the cell's OCV at the start: (pack voltage + I R) per cell (a charging current is
    -- negative), and its error from the resistance's
    select
        c.*,
        v.chemistry,
        (c.start_voltage_v + c.start_current_a * r.resistance_ohm) / v.cells_in_series as cell_ocv_v,
        {{ var('soh_ocv_resistance_sd') }} * abs(c.start_current_a) * r.resistance_ohm / v.cells_in_series
            as cell_ocv_sd_v
    from rested_starts as c
    inner join {{ ref('dws_vehicle') }} as v on c.vin = v.vin
    inner join ocv_resistance as r on c.vin = r.vin and c.start_time = r.start_time
),

anchors as (
    -- points where the SOC is known without the BMS: a rested start read through the OCV
    -- curve where it is steep and the voltage error small, and the end of a full charge (100)
    select
        o.vin,
        o.start_time as anchor_time,
        o.ah_before as ah_counter,
        k.soc_lo + (o.cell_ocv_v - k.ocv_lo) * (k.soc_hi - k.soc_lo) / (k.ocv_hi - k.ocv_lo) as soc_pct,
        o.charger_type,
        o.min_temp_c,
        o.mean_temp_c,
        o.max_temp_c
    from ocv_read as o
    inner join ocv_curve as k
        on
            o.chemistry = k.chemistry
            and k.soc_hi is not null
            and o.cell_ocv_v >= k.ocv_lo
            and o.cell_ocv_v < k.ocv_hi
    where
        1000 * (k.ocv_hi - k.ocv_lo) / (k.soc_hi - k.soc_lo) >= {{ var('soh_ocv_min_slope_mv_per_pct') }}
        -- the SOC's error: 1 mV of voltage resolution and the resistance's error times the
        -- current, through the curve's slope
        and (1 + 1000 * o.cell_ocv_sd_v) / (1000 * (k.ocv_hi - k.ocv_lo) / (k.soc_hi - k.soc_lo))
        <= {{ var('soh_ocv_max_soc_sd_pct') }}
    union all
    select
        c.vin,
        c.end_time as anchor_time,
        c.ah_before + c.ah_in as ah_counter,
        100 as soc_pct,
        c.charger_type,
        c.min_temp_c,
        c.mean_temp_c,
        c.max_temp_c
    from ah_counted as c
    where {{ 'true' if var('soh_ocv_labels') else 'false' }} and c.is_full
),

anchor_turns as (
    -- the anchors where the SOC turns (a discharge's lowest, a charge's highest, and each
    -- vehicle's first and last): pairs of consecutive turns span whole charges and discharges,
    -- the largest ΔSOC and so the smallest relative error, and never overlap
    select
        a.*,
        a.soc_pct - lag(a.soc_pct) over (partition by a.vin order by a.anchor_time) as d_prev,
        lead(a.soc_pct) over (partition by a.vin order by a.anchor_time) - a.soc_pct as d_next
    from anchors as a
),

anchor_pairs as (
    select
        a.*,
        lag(a.anchor_time) over (partition by a.vin order by a.anchor_time) as prev_time,
        lag(a.ah_counter) over (partition by a.vin order by a.anchor_time) as prev_ah_counter,
        lag(a.soc_pct) over (partition by a.vin order by a.anchor_time) as prev_soc_pct,
        lag(a.charger_type) over (partition by a.vin order by a.anchor_time) as prev_charger_type,
        lag(a.min_temp_c) over (partition by a.vin order by a.anchor_time) as prev_min_temp_c,
        lag(a.mean_temp_c) over (partition by a.vin order by a.anchor_time) as prev_mean_temp_c,
        lag(a.max_temp_c) over (partition by a.vin order by a.anchor_time) as prev_max_temp_c
    from anchor_turns as a
    where a.d_prev is null or a.d_next is null or a.d_prev * a.d_next <= 0
),

ocv_labels as (
    -- OCV-anchored labels: the Ah the vehicle's own counter saw between two consecutive anchors
    -- over the SOC they differ by. No SOC the BMS counted enters, so its capacity belief, its
    -- re-anchoring habits and what it shows during a top-up do not either: a rested charge
    -- start to the charge's completion, a full charge's end to the next rested start, ...
    select
        'ocv' as observation_type,
        p.vin,
        p.prev_time as start_time,
        cast(p.prev_time as date) as start_date,
        p.anchor_time as end_time,
        {{ epoch_seconds('p.anchor_time') }} - {{ epoch_seconds('p.prev_time') }} as duration_s,
        v.vehicle_model,
        v.chemistry,
        v.rated_capacity_ah,
        -- a rising SOC: the charger of the charge the pair starts with or ends with (a charge
        -- that was not a rested start ends in a full-charge anchor), else unknown
        case
            when p.soc_pct > p.prev_soc_pct then coalesce(p.prev_charger_type, p.charger_type, 'unknown')
            else 'none'
        end as charger_type,
        p.prev_soc_pct as start_soc_pct,
        p.soc_pct as end_soc_pct,
        abs(p.soc_pct - p.prev_soc_pct) as delta_soc_pct,
        p.soc_pct >= 100 as is_full_charge,
        false as is_plateau_cut,
        abs(p.ah_counter - p.prev_ah_counter) as measured_ah,
        co.current_offset_a,
        abs(p.ah_counter - p.prev_ah_counter) as measured_ah_calibrated,
        cast(null as double) as mean_c_rate,
        cast(null as double) as max_c_rate,
        p.prev_min_temp_c as min_temp_c,
        p.prev_mean_temp_c as mean_temp_c,
        p.prev_max_temp_c as max_temp_c,
        cast(null as double) as start_odometer_km,
        cast(null as double) as ah_since_full_charge,
        0 as soc_discontinuity_pct,
        1 as run_count
    from anchor_pairs as p
    inner join {{ ref('dws_vehicle') }} as v on p.vin = v.vin
    left join {{ ref('dwd_vehicle_current_offset') }} as co on p.vin = co.vin
    where
        p.prev_time is not null
        and abs(p.soc_pct - p.prev_soc_pct) >= {{ var('soh_label_min_delta_soc') }}
        -- the counter moved the way the SOC did
        and (p.soc_pct - p.prev_soc_pct) * (p.ah_counter - p.prev_ah_counter) > 0
        -- frames lost between far-apart anchors would be Ah the counter never saw
        and {{ epoch_seconds('p.anchor_time') }} - {{ epoch_seconds('p.prev_time') }}
        <= 3600 * {{ var('soh_ocv_max_span_h') }}
),

calibrated as (
    select * from charge_labels
    union all
    select * from discharge_labels
    union all
    select * from ocv_labels
),

observed as (
    select
        c.*,
        c.measured_ah_calibrated / (c.delta_soc_pct / 100) as capacity_ah,
        100 * c.measured_ah_calibrated / (c.delta_soc_pct / 100) / c.rated_capacity_ah as soh_obs_pct
    from calibrated as c
)

select
    o.vin,
    o.start_time,
    o.observation_type,
    o.start_date,
    o.end_time,
    o.duration_s,
    o.vehicle_model,
    o.chemistry,
    o.charger_type,
    o.start_soc_pct,
    o.end_soc_pct,
    o.delta_soc_pct,
    o.is_full_charge,
    o.is_plateau_cut,
    o.measured_ah,
    o.current_offset_a,
    o.current_offset_a is not null as is_offset_calibrated,
    o.measured_ah_calibrated,
    o.run_count,
    o.rated_capacity_ah,
    o.capacity_ah,
    o.soh_obs_pct,
    o.mean_c_rate,
    o.max_c_rate,
    o.min_temp_c,
    o.mean_temp_c,
    o.max_temp_c,
    o.start_odometer_km,
    -- charge + discharge throughput since the last full charge in equivalent full cycles
    -- (discharge ~ charge between charges); null until a full charge is seen
    o.ah_since_full_charge / o.rated_capacity_ah as efc_since_full_charge,
    -- operating conditions, the bands ads_soh_by_condition reports by
    case
        when o.mean_temp_c < 0 then 'below_0C'
        when o.mean_temp_c < 10 then '0_10C'
        when o.mean_temp_c < 20 then '10_20C'
        when o.mean_temp_c < 30 then '20_30C'
        when o.mean_temp_c < 40 then '30_40C'
        else 'above_40C'
    end as temperature_band,
    case
        when o.mean_c_rate < 0.2 then 'below_0.2C'
        when o.mean_c_rate < 0.5 then '0.2_0.5C'
        when o.mean_c_rate < 1.0 then '0.5_1C'
        else 'above_1C'
    end as c_rate_band,
    case
        when extract(month from o.start_date) in (12, 1, 2) then 'winter'
        when extract(month from o.start_date) in (3, 4, 5) then 'spring'
        when extract(month from o.start_date) in (6, 7, 8) then 'summer'
        else 'autumn'
    end as season,
    case
        when o.soc_discontinuity_pct > {{ var('soh_max_soc_discontinuity_pct') }} then 'soc_discontinuity'
        when o.min_temp_c is null or o.max_temp_c is null then 'temperature_unknown'
        when o.min_temp_c < {{ t_min }} or o.max_temp_c > {{ t_max }} then 'temperature_out_of_band'
        when o.mean_c_rate < {{ var('soh_min_c_rate') }} then 'current_too_low'
        when o.max_c_rate > {{ var('soh_max_c_rate') }} then 'current_too_high'
        when o.soh_obs_pct < {{ var('soh_obs_min_pct') }} or o.soh_obs_pct > {{ var('soh_obs_max_pct') }}
            then 'capacity_implausible'
    end as capacity_reject_reason
from observed as o
