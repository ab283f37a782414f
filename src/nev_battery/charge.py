"""Charge-session segmentation of GB/T 32960 frames, vectorized over whole arrays.

Every rule works on flat numpy arrays of the charging frames: boundaries are boolean flags,
segment ids come from a cumulative sum and aggregates from ``ufunc.reduceat``, so the cost is a
few passes over memory however many vehicles or sessions the input holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# GB/T 32960 charge_status: 1 parked charging, 2 driving charging, 3 not charging, 4 complete
CHARGING_STATUSES = (1, 2)
# A segment starts after a gap (also the vehicle's first charging frame in the input: what came
# before is unknown, and a window-dependent "first" would make an incremental run differ from a
# full one), on a plug-in after driving, or on a SOC reset. It ends with the next one's start
# reason, or end_of_data when it may continue past the data seen (within one gap of window_end).
START_REASONS = ("gap", "moved", "soc_reset")
END_OF_DATA = "end_of_data"
# reason codes used internally: index into this tuple
REASONS = (*START_REASONS, END_OF_DATA)
_GAP, _MOVED, _SOC_RESET, _END = range(len(REASONS))
# checked in this order; the first that applies is reported
INELIGIBLE_REASONS = (
    "soc_reset", "missing_soc", "start_soc_high", "end_soc_low", "delta_soc_small", "too_short",
    "gappy", "end_of_data",
)

INPUT_COLUMNS = (
    "vin", "collect_time", "charge_status", "soc_pct", "total_current_a", "total_voltage_v",
    "max_temp_c", "min_temp_c", "odometer_km", "cell_voltage_max_v", "cell_voltage_min_v",
    "rated_capacity_ah",
)
OUTPUT_COLUMNS = (
    "vin", "start_time", "end_time", "duration_s", "start_soc_pct", "end_soc_pct",
    "delta_soc_pct", "charged_ah", "charged_kwh", "mean_current_a", "max_current_a",
    "mean_c_rate", "max_c_rate", "max_power_kw", "charger_type", "min_temp_c", "mean_temp_c",
    "max_temp_c", "end_cell_spread_mv", "max_cell_spread_mv", "start_odometer_km",
    "frame_count", "gap_count", "gap_s", "charging_s", "start_reason", "end_reason",
    "is_soh_eligible",
    "ineligible_reason", "label_ah", "label_delta_soc_pct", "label_charging_s",
    "start_voltage_v", "start_current_a", "start_temp_c",
)
_INT_COLUMNS = ("frame_count", "gap_count")
_STR_COLUMNS = ("charger_type", "start_reason", "end_reason", "ineligible_reason")
_FLOAT_COLUMNS = tuple(
    c for c in OUTPUT_COLUMNS
    if c not in ("vin", "start_time", "end_time", "is_soh_eligible", *_INT_COLUMNS, *_STR_COLUMNS)
)


def spark_schema() -> str:
    """The output columns as a Spark DDL schema (for groupBy().applyInPandas)."""
    def sql_type(c: str) -> str:
        if c in ("start_time", "end_time"):
            return "timestamp"
        if c == "is_soh_eligible":
            return "boolean"
        if c in _INT_COLUMNS:
            return "bigint"
        if c in ("vin", *_STR_COLUMNS):
            return "string"
        return "double"

    return ", ".join(f"{c} {sql_type(c)}" for c in OUTPUT_COLUMNS)


@dataclass(frozen=True)
class ChargeRules:
    """Thresholds of the segmentation and of the SOH-eligibility screen."""

    report_period_s: float = 10.0
    # consecutive charging frames further apart than gap_factor periods belong to two sessions
    gap_factor: float = 30.0
    # a step longer than interp_factor periods means frames are missing
    interp_factor: float = 1.5
    # odometer advance across a missing-frames step that means the car was driven in between
    moved_km: float = 0.5
    # charging never lowers SOC: a drop this large means a new plug-in (or a BMS recalibration)
    soc_reset_pct: float = 3.0
    dc_min_kw: float = 25.0
    start_soc_max: float = 60.0
    end_soc_min: float = 80.0
    min_delta_soc: float = 30.0
    min_duration_s: float = 900.0
    max_gap_share: float = 0.05

    @property
    def gap_s(self) -> float:
        return self.gap_factor * self.report_period_s

    @property
    def interp_s(self) -> float:
        return self.interp_factor * self.report_period_s


DEFAULT_RULES = ChargeRules()


def empty_segments(vin_dtype: object = "str",
                   time_dtype: object = "datetime64[us]") -> pd.DataFrame:
    """The output table with no rows, columns and dtypes as for a non-empty result."""
    return conform_segments(pd.DataFrame({c: [] for c in OUTPUT_COLUMNS}), vin_dtype, time_dtype)


def conform_segments(df: pd.DataFrame, vin_dtype: object, time_dtype: object) -> pd.DataFrame:
    """Column order and dtypes of the segment table (shared so both implementations agree)."""
    dtypes: dict[str, object] = {"vin": vin_dtype, "start_time": time_dtype,
                                 "end_time": time_dtype, "is_soh_eligible": "bool"}
    dtypes.update({c: "float64" for c in _FLOAT_COLUMNS})
    dtypes.update({c: "int64" for c in _INT_COLUMNS})
    dtypes.update({c: "str" for c in _STR_COLUMNS})
    return df[list(OUTPUT_COLUMNS)].astype(dtypes).reset_index(drop=True)


def _check_columns(frames: pd.DataFrame) -> None:
    missing = [c for c in INPUT_COLUMNS if c not in frames.columns]
    if missing:
        raise ValueError(f"frames lack columns: {', '.join(missing)}")


def _time_column(frames: pd.DataFrame) -> pd.Series:
    ct = frames["collect_time"]
    if not pd.api.types.is_datetime64_any_dtype(ct.dtype):
        raise ValueError(f"collect_time must be datetime64, got {ct.dtype}")
    if getattr(ct.dtype, "tz", None) is not None:
        ct = ct.dt.tz_convert("UTC").dt.tz_localize(None)
    return ct


def _check_order(codes: np.ndarray, uniques: pd.Index, t: np.ndarray,
                 row_of: np.ndarray) -> None:
    """Raise unless rows are grouped by ascending vin, then ascending collect_time (row_of maps
    a position back to the caller's row number for the message).

    Only the vin of each run of equal codes is compared as a string, so a 10 M-row table costs
    one integer diff plus a comparison of as many strings as there are vehicles."""
    n = codes.size
    if n < 2:
        return
    change = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    run_vin = np.asarray(uniques, dtype=object)[codes[np.r_[0, change]]]
    bad = np.flatnonzero(run_vin[1:] <= run_vin[:-1])
    if bad.size:
        b = bad[0]
        raise ValueError(f"frames are not sorted by vin: {run_vin[b + 1]!r} at row "
                         f"{row_of[change[b]]} follows {run_vin[b]!r}")
    same_vin = np.ones(n - 1, dtype=bool)
    same_vin[change - 1] = False
    back = np.flatnonzero(same_vin & (t[1:] < t[:-1]))
    if back.size:
        i = back[0] + 1
        raise ValueError(f"frames are not sorted by collect_time within vin "
                         f"{uniques[codes[i]]!r}: row {row_of[i]} is earlier than row "
                         f"{row_of[i - 1]}")


def _first_valid(x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """First non-NaN value of x in each segment [start, end], NaN if there is none."""
    valid = np.flatnonzero(~np.isnan(x))
    k = np.searchsorted(valid, starts)
    i = valid[np.minimum(k, valid.size - 1)] if valid.size else np.zeros_like(starts)
    return np.where((k < valid.size) & (i <= ends), x[i], np.nan)


def _last_valid(x: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Last non-NaN value of x in each segment [start, end], NaN if there is none."""
    valid = np.flatnonzero(~np.isnan(x))
    k = np.searchsorted(valid, ends, side="right") - 1
    i = valid[np.maximum(k, 0)] if valid.size else np.zeros_like(starts)
    return np.where((k >= 0) & (i >= starts), x[i], np.nan)


def _nanmean(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(x)
    total = np.add.reduceat(np.where(ok, x, 0.0), starts)
    count = np.add.reduceat(ok.astype(np.int64), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _per_capacity(x: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(capacity > 0, x / capacity, np.nan)


def _trapezoid_hours(y: np.ndarray, step: np.ndarray, pair: np.ndarray,
                     starts: np.ndarray) -> np.ndarray:
    """Per-segment trapezoidal integral of y over the given steps, in (unit of y)·h.

    Element i holds the pair (i-1, i); segment starts and pairs with a null end add 0."""
    area = np.zeros(y.size)
    area[1:] = 0.5 * (y[:-1] + y[1:]) * step[1:]
    area[~pair | np.isnan(area)] = 0.0
    return np.add.reduceat(area, starts) / 3600.0


def _label_interval(soc: np.ndarray, area: np.ndarray, step: np.ndarray, pair: np.ndarray,
                    starts: np.ndarray, ends: np.ndarray, start_soc: np.ndarray,
                    end_soc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The capacity label's interval of each segment: from the first frame whose SOC left the
    start value to the first frame of the final SOC plateau (the frame after the last one whose
    SOC differs from the end value). Both ends are SOC transitions, so the interval spans
    end - start - 1 points of the displayed SOC whatever its rounding, and the Ah the charger
    pushes while the display is held (a top-up at a frozen 97-99, a CV tail at 100) stay out of
    it: Ah and ΔSOC describe the same interval. Returns (Ah, ΔSOC points, charging seconds),
    NaN where the SOC moved by fewer than 2 points."""
    n = soc.size
    pos = np.arange(n)
    first = np.zeros(n, dtype=bool)
    first[starts] = True
    seg = np.cumsum(first) - 1
    valid = ~np.isnan(soc)
    s0 = start_soc[seg]
    s1 = end_soc[seg]
    first_change = np.minimum.reduceat(np.where(valid & (soc != s0), pos, n), starts)
    last_off_end = np.maximum.reduceat(np.where(valid & (soc != s1), pos, -1), starts)
    plateau = last_off_end + 1
    ok = (first_change <= last_off_end) & (plateau <= ends) & (end_soc - start_soc >= 2)
    # per-segment sums of the pairs (lo, lo+1) .. (hi-1, hi), pair i ending at frame i: a sum
    # inside each segment (not a difference of array-wide cumulative sums), so that a segment's
    # label does not depend in its last bits on which other frames share the batch (a daily
    # run must reproduce a full build, and with it the hash of a retrained SOH model)
    inside = pair & (pos > first_change[seg]) & (pos <= plateau[seg]) & ok[seg]
    label_ah = np.where(ok, np.add.reduceat(np.where(inside & ~np.isnan(area), area, 0.0),
                                            starts) / 3600.0, np.nan)
    label_s = np.where(ok, np.add.reduceat(np.where(inside, step, 0.0), starts), np.nan)
    label_dsoc = np.where(ok, end_soc - start_soc - 1.0, np.nan)
    return label_ah, label_dsoc, label_s


def segment_charges(frames: pd.DataFrame, rules: ChargeRules = DEFAULT_RULES,
                    window_end: object = None) -> pd.DataFrame:
    """Split charging frames into charge sessions, one output row per session.

    ``frames`` must be sorted by vin, then collect_time (checked, never re-sorted). Frames whose
    charge_status is not 1 or 2 are ignored. ``window_end`` is where the data seen ends: a
    session still open near it may continue in the next batch, so it is not SOH-eligible."""
    _check_columns(frames)
    ct = _time_column(frames)
    # Only charging frames take part: select them first, so that the string work (factorizing
    # and checking the vin order) touches them alone, not the whole day's frames.
    status = frames["charge_status"]
    charging = ((status == CHARGING_STATUSES[0]) | (status == CHARGING_STATUSES[1]))
    rows = np.flatnonzero(charging.to_numpy(dtype=bool, na_value=False))
    if rows.size == 0:
        return empty_segments(frames["vin"].dtype, ct.dtype)
    t_all = ct.to_numpy()[rows]
    if np.isnat(t_all).any():
        raise ValueError("collect_time has nulls")
    unit = np.datetime_data(t_all.dtype)[0]
    per_s = np.timedelta64(1, "s") / np.timedelta64(1, unit)
    t = t_all.view(np.int64)
    code, uniques = pd.factorize(frames["vin"].array.take(rows), sort=False)
    if code.size and code.min() < 0:
        raise ValueError("vin has nulls")
    _check_order(code, uniques, t, rows)

    def col(name: str) -> np.ndarray:
        s = frames[name]
        if s.dtype == np.float64:  # plain floats: NaN already marks nulls, skip a full copy
            return s.to_numpy()[rows]
        return s.to_numpy(dtype=np.float64, na_value=np.nan)[rows]

    n = rows.size
    new_vin = np.ones(n, dtype=bool)
    new_vin[1:] = code[1:] != code[:-1]
    dt = np.zeros(n)
    dt[1:] = (t[1:] - t[:-1]) / per_s
    long_step = ~new_vin & (dt > rules.interp_s)

    gap = ~new_vin & (dt > rules.gap_s)
    odo = col("odometer_km")
    moved = np.zeros(n, dtype=bool)
    moved[1:] = long_step[1:] & (odo[1:] - odo[:-1] >= rules.moved_km)
    # previous non-null SOC inside the same session (the run the vin, gap and moved rules
    # delimit): forward-filled index, rejected if before the run's first frame. A null SOC at a
    # session's start must not be compared with the previous session's end.
    soc = col("soc_pct")
    pos = np.arange(n)
    last_soc = np.maximum.accumulate(np.where(np.isnan(soc), -1, pos))
    prev = np.full(n, -1)
    prev[1:] = last_soc[:-1]
    run_first = np.maximum.accumulate(np.where(new_vin | gap | moved, pos, 0))
    has_prev = (prev >= run_first) & ~np.isnan(soc)
    reset = has_prev & (soc[np.maximum(prev, 0)] - soc >= rules.soc_reset_pct)

    reason = np.select([new_vin | gap, moved, reset], [_GAP, _MOVED, _SOC_RESET], -1)
    is_start = reason >= 0
    starts = np.flatnonzero(is_start)
    ends = np.r_[starts[1:] - 1, n - 1]
    start_reason = reason[starts]
    # the next segment's start reason ends this one; the vin's last segment ends with a gap,
    # or end_of_data when it may continue past window_end
    end_reason = np.r_[start_reason[1:], _GAP]
    last_of_vin = np.r_[new_vin[starts[1:]], True]
    end_reason[last_of_vin] = _GAP
    w_int = None
    if window_end is not None:
        w = pd.Timestamp(window_end)
        if w.tz is not None:
            w = w.tz_convert("UTC").tz_localize(None)
        w_int = w.to_datetime64().astype(f"datetime64[{unit}]").view(np.int64)
        end_reason[last_of_vin & ((w_int - t[ends]) / per_s <= rules.gap_s)] = _END

    pair = ~is_start
    step = np.where(dt <= rules.interp_s, dt, rules.report_period_s)
    current = np.abs(col("total_current_a"))
    power = np.abs(col("total_voltage_v") * col("total_current_a")) / 1000.0
    inner_gap = pair & long_step
    gap_count = np.add.reduceat(inner_gap.astype(np.int64), starts)
    gap_s = np.add.reduceat(np.where(inner_gap, dt, 0.0), starts)
    duration = (t[ends] - t[starts]) / per_s

    start_soc = _first_valid(soc, starts, ends)
    end_soc = _last_valid(soc, starts, ends)
    area = np.zeros(n)
    area[1:] = 0.5 * (current[:-1] + current[1:]) * step[1:]
    label_ah, label_dsoc, label_s = _label_interval(soc, area, step, pair, starts, ends,
                                                    start_soc, end_soc)
    capacity = _first_valid(col("rated_capacity_ah"), starts, ends)
    mean_current = _nanmean(current, starts)
    max_current = np.fmax.reduceat(current, starts)
    max_power = np.fmax.reduceat(power, starts)
    t_max = col("max_temp_c")
    t_min = col("min_temp_c")
    spread = (col("cell_voltage_max_v") - col("cell_voltage_min_v")) * 1000.0

    charger = np.where(max_power >= rules.dc_min_kw, "DC", "AC").astype(object)
    charger[np.isnan(max_power)] = None  # no power reading at all: type unknown

    delta_soc = end_soc - start_soc
    checks = [
        (start_reason == _SOC_RESET) | (end_reason == _SOC_RESET),
        np.isnan(start_soc),
        start_soc > rules.start_soc_max,
        end_soc < rules.end_soc_min,
        delta_soc < rules.min_delta_soc,
        duration < rules.min_duration_s,
        gap_s > rules.max_gap_share * duration,
    ]
    checks.append(end_reason == _END)
    failed = np.select(checks, range(len(checks)), -1)
    ineligible = np.array((*INELIGIBLE_REASONS, None), dtype=object)[failed]

    names = np.array(REASONS, dtype=object)
    out = pd.DataFrame({
        "vin": frames["vin"].array.take(rows[starts]),
        "start_time": ct.array.take(rows[starts]),
        "end_time": ct.array.take(rows[ends]),
        "duration_s": duration,
        "start_soc_pct": start_soc,
        "end_soc_pct": end_soc,
        "delta_soc_pct": delta_soc,
        "charged_ah": _trapezoid_hours(current, step, pair, starts),
        "charged_kwh": _trapezoid_hours(power, step, pair, starts),
        "mean_current_a": mean_current,
        "max_current_a": max_current,
        "mean_c_rate": _per_capacity(mean_current, capacity),
        "max_c_rate": _per_capacity(max_current, capacity),
        "max_power_kw": max_power,
        "charger_type": charger,
        "min_temp_c": np.fmin.reduceat(t_min, starts),
        "mean_temp_c": _nanmean((t_max + t_min) / 2.0, starts),
        "max_temp_c": np.fmax.reduceat(t_max, starts),
        "end_cell_spread_mv": _last_valid(spread, starts, ends),
        "max_cell_spread_mv": np.fmax.reduceat(spread, starts),
        "start_odometer_km": _first_valid(odo, starts, ends),
        "frame_count": ends - starts + 1,
        "gap_count": gap_count,
        "gap_s": gap_s,
        # the time the charge integrals cover (long steps count one report period): what a
        # current-sensor offset is multiplied by
        "charging_s": np.add.reduceat(np.where(pair, step, 0.0), starts),
        "start_reason": names[start_reason],
        "end_reason": names[end_reason],
        "is_soh_eligible": failed < 0,
        "ineligible_reason": ineligible,
        "label_ah": label_ah,
        "label_delta_soc_pct": label_dsoc,
        "label_charging_s": label_s,
        # the segment's first frame as it is (null stays null): with the time the vehicle rested
        # before it, the voltage an OCV-anchored capacity label starts from; the coldest probe
        # for the resistance's temperature (under a DC current the hot spots read above the
        # cells the current flows through)
        "start_voltage_v": col("total_voltage_v")[starts],
        "start_current_a": col("total_current_a")[starts],
        "start_temp_c": t_min[starts],
    })
    return conform_segments(out, frames["vin"].dtype, ct.dtype)
