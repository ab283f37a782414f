"""DWD charge segments: the platform's get_charge(start_soc, end_soc), one row per segment.

Thin: selects the charging frames of the incremental window (narrow scalar columns only, never
the cell arrays), streams them vehicle-chunk by vehicle-chunk in (vin, collect_time) order and
calls the pure vectorized nev_battery.charge.segment_charges. Window rules as in
macros/dwd_window.sql (nev_battery.dwd_window): a segment belongs to the day it starts and is
rebuilt whole when it runs past midnight.
"""

from datetime import datetime, timedelta

import pandas as pd

from nev_battery.charge import ChargeRules, segment_charges
from nev_battery.dwd_window import dwd_window, parse_batch_dates, read_predicate

FRAME_COLUMNS = ("vin, collect_time, charge_status, soc_pct, total_current_a, total_voltage_v, "
                 "max_temp_c, min_temp_c, odometer_km, cell_voltage_max_v, cell_voltage_min_v")
# frames per chunk: bounds the pandas working set whatever the fleet size
CHUNK_FRAMES = 2_000_000


def model(dbt, session):
    dbt.config(materialized="incremental", incremental_strategy="append")
    # dbt finds the config keys a Python model reads by parsing literal dbt.config.get("...") calls
    rules = ChargeRules(
        report_period_s=float(dbt.config.get("report_period_s")),
        gap_factor=float(dbt.config.get("segment_gap_factor")),
        start_soc_max=float(dbt.config.get("charge_start_soc_max")),
        end_soc_min=float(dbt.config.get("charge_end_soc_min")),
        min_delta_soc=float(dbt.config.get("soh_min_delta_soc")),
        min_duration_s=float(dbt.config.get("soh_min_duration_s")),
    )
    batch = parse_batch_dates(dbt.config.get("batch_dates"))
    window = dwd_window(batch if dbt.is_incremental else [],
                        int(dbt.config.get("dwd_lookback_days")))
    gap_s = rules.report_period_s * rules.gap_factor

    # the pre-hook's statement leaves its result pending on this connection: finish it first
    session.complete()
    frames_sql = dbt.ref("dws_realtime_frame").sql_query()
    vehicles_sql = dbt.ref("dws_vehicle").sql_query()
    charging = (
        f"select {', '.join('f.' + c.strip() for c in FRAME_COLUMNS.split(','))}, "
        f"v.rated_capacity_ah from ({frames_sql}) as f "
        f"inner join ({vehicles_sql}) as v on f.vin = v.vin "
        f"where f.charge_status in (1, 2) and {read_predicate(window, gap_s, 'f.collect_date', 'f.collect_time')}"
    )
    (n_frames,) = session.sql(f"select count(*) from ({charging})").fetchall()[0]
    # The data seen so far ends with the latest day landed (not the latest day read: a day-by-day
    # build must agree with a full one); a segment within one gap of that end may continue and
    # is not SOH-eligible until the next run rebuilds it.
    since = "" if window.is_everything else f"where collect_date >= cast('{window.rebuild[0]}' as date)"
    (last_day,) = session.sql(f"select max(collect_date) from ({frames_sql}) {since}").fetchall()[0]
    window_end = None if last_day is None else datetime.combine(last_day + timedelta(days=1),
                                                                datetime.min.time())
    n_chunks = max(1, -(-n_frames // CHUNK_FRAMES))
    parts = []
    for k in range(n_chunks):
        frames = session.sql(
            f"select * from ({charging}) where hash(vin) % {n_chunks} = {k} "
            "order by vin, collect_time").to_arrow_table().to_pandas()
        parts.append(segment_charges(frames, rules, window_end=window_end))
    seg = pd.concat(parts, ignore_index=True)
    seg.insert(3, "start_date", seg["start_time"].dt.date)
    if not window.is_everything:
        keep = set(window.rebuild)
        seg = seg[seg["start_date"].isin(keep)]
    seg = seg.sort_values(["vin", "start_time"], ignore_index=True)
    # a relation on the model's own connection: dbt-duckdb then writes it inside dbt's
    # transaction (a DataFrame is written through another cursor, which a full refresh's rename
    # in the open transaction cannot see)
    return session.from_df(seg)
