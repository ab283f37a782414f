"""Per-vehicle pandas version of :func:`nev_battery.charge.segment_charges`.

It applies the same rules the straightforward way (group by vin, then by segment) and is kept
as the benchmark baseline and as an independent check of the vectorized code.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from nev_battery.charge import (
    CHARGING_STATUSES,
    DEFAULT_RULES,
    END_OF_DATA,
    INPUT_COLUMNS,
    ChargeRules,
    conform_segments,
    empty_segments,
)

_NUMERIC = INPUT_COLUMNS[3:]


def segment_charges_baseline(frames: pd.DataFrame, rules: ChargeRules = DEFAULT_RULES,
                             window_end: object = None) -> pd.DataFrame:
    """Same contract and output as ``segment_charges``, one vehicle at a time."""
    missing = [c for c in INPUT_COLUMNS if c not in frames.columns]
    if missing:
        raise ValueError(f"frames lack columns: {', '.join(missing)}")
    if getattr(frames["collect_time"].dtype, "tz", None) is not None:
        naive = frames["collect_time"].dt.tz_convert("UTC").dt.tz_localize(None)
        frames = frames.assign(collect_time=naive)
    if not frames["vin"].is_monotonic_increasing:
        raise ValueError("frames are not sorted by vin")
    step = frames.groupby("vin", sort=False)["collect_time"].diff()
    if (step < pd.Timedelta(0)).any():
        raise ValueError("frames are not sorted by collect_time within vin")
    if window_end is not None:
        window_end = pd.Timestamp(window_end)
        if window_end.tz is not None:
            window_end = window_end.tz_convert("UTC").tz_localize(None)

    charging = frames[frames["charge_status"].isin(CHARGING_STATUSES)]
    charging = charging.astype({c: "float64" for c in _NUMERIC})
    if charging.empty:
        return empty_segments(frames["vin"].dtype, frames["collect_time"].dtype)
    out = charging.groupby("vin", sort=False, group_keys=False).apply(
        _vehicle_segments, rules, window_end)
    return conform_segments(out, frames["vin"].dtype, frames["collect_time"].dtype)


def _vehicle_segments(g: pd.DataFrame, rules: ChargeRules, window_end) -> pd.DataFrame:
    vin = g.name
    g = g.reset_index(drop=True)
    dt = g["collect_time"].diff().dt.total_seconds()
    soc = g["soc_pct"]
    gap = dt > rules.gap_s
    moved = (dt > rules.interp_s) & (g["odometer_km"].diff() >= rules.moved_km)
    # the previous SOC is looked up inside the session only (first, gap and moved delimit it)
    run_id = (gap | moved).cumsum()
    prev_soc = soc.groupby(run_id).transform(lambda x: x.ffill().shift())
    reset = soc.notna() & (prev_soc - soc >= rules.soc_reset_pct)

    reason = pd.Series(None, index=g.index, dtype=object)
    reason[reset] = "soc_reset"
    reason[moved] = "moved"
    reason[gap] = "gap"
    reason.iloc[0] = "gap"  # what came before the input is unknown
    segment_id = reason.notna().cumsum()

    rows = [_segment_row(s, reason.loc[s.index[0]], rules) for _, s in g.groupby(segment_id)]
    for i, row in enumerate(rows):
        row["vin"] = vin
        if i + 1 < len(rows):
            row["end_reason"] = rows[i + 1]["start_reason"]
        elif (window_end is not None
              and (window_end - row["end_time"]).total_seconds() <= rules.gap_s):
            row["end_reason"] = END_OF_DATA  # may continue past the data seen
        else:
            row["end_reason"] = "gap"
    for row in rows:
        row["ineligible_reason"] = _ineligible(row, rules, window_end)
        row["is_soh_eligible"] = row["ineligible_reason"] is None
    return pd.DataFrame(rows)


def _segment_row(s: pd.DataFrame, start_reason: str, rules: ChargeRules) -> dict:
    dt = s["collect_time"].diff().dt.total_seconds()
    # missing frames are taken as not charging: integrate one report period across them
    step = dt.where(dt <= rules.interp_s, rules.report_period_s)
    current = s["total_current_a"].abs()
    power = (s["total_voltage_v"] * s["total_current_a"]).abs() / 1000.0
    soc = s["soc_pct"].dropna()
    capacity = s["rated_capacity_ah"].dropna()
    capacity = capacity.iloc[0] if len(capacity) else np.nan
    spread = ((s["cell_voltage_max_v"] - s["cell_voltage_min_v"]) * 1000.0).dropna()
    odometer = s["odometer_km"].dropna()
    long_steps = dt[dt > rules.interp_s]

    row = {
        "start_time": s["collect_time"].iloc[0],
        "end_time": s["collect_time"].iloc[-1],
        "duration_s": (s["collect_time"].iloc[-1] - s["collect_time"].iloc[0]).total_seconds(),
        "start_soc_pct": soc.iloc[0] if len(soc) else np.nan,
        "end_soc_pct": soc.iloc[-1] if len(soc) else np.nan,
        "charged_ah": (0.5 * (current.shift() + current) * step).sum() / 3600.0,
        "charged_kwh": (0.5 * (power.shift() + power) * step).sum() / 3600.0,
        "mean_current_a": current.mean(),
        "max_current_a": current.max(),
        "max_power_kw": power.max(),
        "min_temp_c": s["min_temp_c"].min(),
        "mean_temp_c": ((s["max_temp_c"] + s["min_temp_c"]) / 2.0).mean(),
        "max_temp_c": s["max_temp_c"].max(),
        "end_cell_spread_mv": spread.iloc[-1] if len(spread) else np.nan,
        "max_cell_spread_mv": spread.max(),
        "start_odometer_km": odometer.iloc[0] if len(odometer) else np.nan,
        "frame_count": len(s),
        "gap_count": len(long_steps),
        "gap_s": long_steps.sum(),
        "charging_s": step.iloc[1:].sum(),
        "start_reason": start_reason,
        "start_voltage_v": float(s["total_voltage_v"].iloc[0]),
        "start_current_a": float(s["total_current_a"].iloc[0]),
        "start_temp_c": float(s["min_temp_c"].iloc[0]),
    }
    row["delta_soc_pct"] = row["end_soc_pct"] - row["start_soc_pct"]
    # the label interval: first frame off the start SOC .. first frame of the final plateau
    area = (0.5 * (current.shift() + current) * step).fillna(0.0).to_numpy().copy()
    secs = step.fillna(0.0).to_numpy().copy()
    secs[0] = area[0] = 0.0
    vals = s["soc_pct"].to_numpy()
    ok_soc = ~np.isnan(vals)
    off_start = np.flatnonzero(ok_soc & (vals != row["start_soc_pct"]))
    off_end = np.flatnonzero(ok_soc & (vals != row["end_soc_pct"]))
    row["label_ah"] = row["label_delta_soc_pct"] = row["label_charging_s"] = np.nan
    if (len(off_start) and len(off_end) and off_start[0] <= off_end[-1]
            and off_end[-1] + 1 < len(s) and row["delta_soc_pct"] >= 2):
        lo, hi = off_start[0], off_end[-1] + 1
        row["label_ah"] = area[lo + 1:hi + 1].sum() / 3600.0
        row["label_charging_s"] = secs[lo + 1:hi + 1].sum()
        row["label_delta_soc_pct"] = row["delta_soc_pct"] - 1.0
    ok = capacity > 0
    row["mean_c_rate"] = row["mean_current_a"] / capacity if ok else np.nan
    row["max_c_rate"] = row["max_current_a"] / capacity if ok else np.nan
    if math.isnan(row["max_power_kw"]):
        row["charger_type"] = None
    else:
        row["charger_type"] = "DC" if row["max_power_kw"] >= rules.dc_min_kw else "AC"
    return row


def _ineligible(row: dict, rules: ChargeRules, window_end) -> str | None:
    if "soc_reset" in (row["start_reason"], row["end_reason"]):
        return "soc_reset"
    if math.isnan(row["start_soc_pct"]):
        return "missing_soc"
    if row["start_soc_pct"] > rules.start_soc_max:
        return "start_soc_high"
    if row["end_soc_pct"] < rules.end_soc_min:
        return "end_soc_low"
    if row["delta_soc_pct"] < rules.min_delta_soc:
        return "delta_soc_small"
    if row["duration_s"] < rules.min_duration_s:
        return "too_short"
    if row["gap_s"] > rules.max_gap_share * row["duration_s"]:
        return "gappy"
    if row["end_reason"] == END_OF_DATA:
        return "end_of_data"
    return None
