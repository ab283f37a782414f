"""DWD charge segments: the platform's get_charge(start_soc, end_soc), one row per segment.

Thin: selects the charging frames of the incremental window (narrow scalar columns only, never
the cell arrays) and calls the pure vectorized nev_battery.charge.segment_charges: on DuckDB
vehicle-chunk by vehicle-chunk in (vin, collect_time) order, on Spark distributed per vehicle
with groupBy("vin").applyInPandas (through the nevspark adapter's Spark Connect). Window rules as in
macros/dwd_window.sql (nev_battery.dwd_window): a segment belongs to the day it starts and is
rebuilt whole when it runs past midnight.
"""

from datetime import datetime, timedelta

import pandas as pd

from nev_battery.charge import (
    INPUT_COLUMNS,
    OUTPUT_COLUMNS,
    ChargeRules,
    segment_charges,
    spark_schema,
)
from nev_battery.dwd_window import dwd_window, parse_batch_dates, read_predicate

# the frame columns segment_charges reads; rated_capacity_ah comes from dws_vehicle
FRAME_COLUMNS = [c for c in INPUT_COLUMNS if c != "rated_capacity_ah"]
# frames per chunk: bounds the pandas working set whatever the fleet size
CHUNK_FRAMES = 2_000_000


def model(dbt, session):
    # incremental strategy and partitioning per target: dbt_project.yml
    # (a Python model is a table unless its own code says otherwise: dbt_project.yml cannot)
    dbt.config(materialized="incremental")
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
    if hasattr(session, "createDataFrame"):
        return _spark(dbt, session, rules, window)
    return _duckdb(dbt, session, rules, window)


def _window_end(last_day):
    # The data seen so far ends with the latest day landed (not the latest day read: a day-by-day
    # build must agree with a full one); a segment within one gap of that end may continue and
    # is not SOH-eligible until the next run rebuilds it.
    if last_day is None:
        return None
    return datetime.combine(last_day + timedelta(days=1), datetime.min.time())


def _duckdb(dbt, session, rules, window):
    # the pre-hook's statement leaves its result pending on this connection: finish it first
    session.complete()
    frames_sql = dbt.ref("dws_realtime_frame").sql_query()
    vehicles_sql = dbt.ref("dws_vehicle").sql_query()
    charging = (
        f"select {', '.join('f.' + c for c in FRAME_COLUMNS)}, "
        f"v.rated_capacity_ah from ({frames_sql}) as f "
        f"inner join ({vehicles_sql}) as v on f.vin = v.vin "
        f"where f.charge_status in (1, 2) and {read_predicate(window, rules.gap_s, 'f.collect_date', 'f.collect_time')}"
    )
    (n_frames,) = session.sql(f"select count(*) from ({charging})").fetchall()[0]
    since = "" if window.is_everything else f"where collect_date >= cast('{window.rebuild[0]}' as date)"
    (last_day,) = session.sql(f"select max(collect_date) from ({frames_sql}) {since}").fetchall()[0]
    window_end = _window_end(last_day)
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
        seg = seg[seg["start_date"].isin(set(window.rebuild))]
    seg = seg.sort_values(["vin", "start_time"], ignore_index=True)
    # a relation on the model's own connection: dbt-duckdb then writes it inside dbt's
    # transaction (a DataFrame is written through another cursor, which a full refresh's rename
    # in the open transaction cannot see)
    return session.from_df(seg)


def _spark(dbt, session, rules, window):
    """Distributed: the frames stay in Spark; each vehicle's charging frames go to one Python
    worker (groupBy("vin").applyInPandas), which runs the same segment_charges."""
    from pyspark.sql import functions as F

    frames = dbt.ref("dws_realtime_frame")
    vehicles = dbt.ref("dws_vehicle").select("vin", "rated_capacity_ah")
    charging = (frames.where("charge_status in (1, 2)")
                .where(read_predicate(window, rules.gap_s))
                .select(*FRAME_COLUMNS)
                .join(vehicles, "vin"))
    recent = frames if window.is_everything else frames.where(
        F.col("collect_date") >= F.lit(window.rebuild[0]))
    window_end = _window_end(recent.agg(F.max("collect_date")).collect()[0][0])

    def per_vehicle(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values("collect_time", kind="stable", ignore_index=True)
        return segment_charges(pdf, rules, window_end=window_end)

    seg = charging.groupBy("vin").applyInPandas(per_vehicle, schema=spark_schema())
    seg = seg.withColumn("start_date", F.to_date("start_time"))
    if not window.is_everything:
        seg = seg.where(F.col("start_date").isin([d.isoformat() for d in window.rebuild]))
    return seg.select(*OUTPUT_ORDER)


# segment_charges' columns with start_date after the times, as the DuckDB path writes them
OUTPUT_ORDER = [*OUTPUT_COLUMNS[:3], "start_date", *OUTPUT_COLUMNS[3:]]
