"""Charge segmentation: rules on hand-built sessions, and the vectorized code vs the baseline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nev_battery.charge import DEFAULT_RULES, OUTPUT_COLUMNS, ChargeRules, segment_charges
from nev_battery.charge_baseline import segment_charges_baseline

T0 = pd.Timestamp("2024-03-01 08:00:00")
FLOATS = [c for c in OUTPUT_COLUMNS
          if c not in ("vin", "start_time", "end_time", "charger_type", "frame_count",
                       "gap_count", "start_reason", "end_reason", "is_soh_eligible",
                       "ineligible_reason")]


def session(vin: str = "V1", start: pd.Timestamp = T0, n: int = 10, *, period: float = 10.0,
            current: float = -20.0, voltage: float = 400.0, soc0: float = 20.0,
            soc_step: float = 0.0, status: int = 1, odometer: float = 1000.0,
            odo_step: float = 0.0) -> pd.DataFrame:
    """n frames of one plug-in at a fixed report period (charging current is negative)."""
    i = np.arange(n)
    return pd.DataFrame({
        "vin": vin,
        "collect_time": start + pd.to_timedelta(i * period, unit="s"),
        "charge_status": status,
        "soc_pct": np.floor(soc0 + i * soc_step),
        "total_current_a": current,
        "total_voltage_v": voltage,
        "max_temp_c": 30.0,
        "min_temp_c": 26.0,
        "odometer_km": odometer + i * odo_step,
        "cell_voltage_max_v": 3.92,
        "cell_voltage_min_v": 3.90,
        "rated_capacity_ah": 100.0,
    })


def table(*parts: pd.DataFrame) -> pd.DataFrame:
    df = pd.concat(parts, ignore_index=True)
    return df.astype({"vin": "str", "collect_time": "datetime64[us]", "charge_status": "Int64",
                      "soc_pct": "float64"})


def both(frames: pd.DataFrame, rules: ChargeRules = DEFAULT_RULES, **kw) -> pd.DataFrame:
    """Run both implementations, require identical segments, return the vectorized result."""
    fast = segment_charges(frames, rules, **kw)
    assert_same(fast, segment_charges_baseline(frames, rules, **kw))
    return fast


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(OUTPUT_COLUMNS) == list(b.columns)
    assert a.dtypes.equals(b.dtypes)
    assert len(a) == len(b)
    for c in OUTPUT_COLUMNS:
        if c in FLOATS:
            np.testing.assert_allclose(a[c].to_numpy(), b[c].to_numpy(), rtol=1e-9,
                                       equal_nan=True, err_msg=c)
        else:
            pd.testing.assert_series_equal(a[c], b[c], check_exact=True)


def random_frames(seed: int = 3, vehicles: int = 6, sessions: int = 5) -> pd.DataFrame:
    """A fleet with random plug-ins, dropped frames, status flicker, SOC resets, drives between
    sessions and nulls in every numeric column."""
    rng = np.random.default_rng(seed)
    parts = []
    for v in range(vehicles):
        t = T0 + pd.Timedelta(seconds=int(rng.integers(0, 3000)))
        odometer = 5000.0
        for _ in range(sessions):
            n = int(rng.integers(1, 450))
            steps = rng.choice([10, 15, 20, 30, 60, 200, 301], size=n,
                               p=[.975, .005, .008, .005, .004, .002, .001])
            steps[0] = 0
            jumps = rng.choice([0, 1, -2, -5], size=n, p=[.69, .3, .008, .002])
            status = rng.choice([1, 2, 3, 4, 0], size=n, p=[.9, .09, .005, .002, .003])
            df = pd.DataFrame({
                "vin": f"LTEST{v:012d}",
                "collect_time": t + pd.to_timedelta(np.cumsum(steps), unit="s"),
                "charge_status": pd.array(status, dtype="Int64"),
                "soc_pct": np.clip(rng.integers(5, 70) + np.cumsum(jumps), 0, 100).astype(float),
                "total_current_a": -rng.uniform(5, 20, n) * rng.choice([1.0, 10.0]),
                "total_voltage_v": rng.uniform(340, 410, n),
                "max_temp_c": rng.uniform(25, 40, n),
                "min_temp_c": rng.uniform(15, 25, n),
                "odometer_km": odometer + np.cumsum(np.where(status == 2, 0.1, 0.0)),
                "cell_voltage_max_v": rng.uniform(3.9, 4.1, n),
                "cell_voltage_min_v": rng.uniform(3.7, 3.9, n),
                "rated_capacity_ah": 150.0 + v,
            })
            df.loc[status == 0, "charge_status"] = pd.NA
            for c in ("soc_pct", "total_current_a", "total_voltage_v", "max_temp_c",
                      "min_temp_c", "odometer_km", "cell_voltage_max_v", "cell_voltage_min_v"):
                df.loc[rng.random(n) < 0.03, c] = np.nan
            parts.append(df)
            # the next plug-in: sometimes close enough to merge, sometimes after a drive
            pause = rng.integers(20, 300) if rng.random() < 0.25 else rng.integers(301, 20000)
            t = df.collect_time.iloc[-1] + pd.Timedelta(seconds=int(pause))
            odometer = df.odometer_km.max() + rng.choice([0.0, 0.3, 5.0, 40.0])
    return table(*parts)


def test_basic_session_ac_and_dc():
    ac = both(table(session(n=100, soc0=20, soc_step=0.5)))
    assert len(ac) == 1
    s = ac.iloc[0]
    assert s.start_time == T0 and s.end_time == T0 + pd.Timedelta(seconds=990)
    assert s.duration_s == 990.0 and s.frame_count == 100 and s.gap_count == 0
    assert s.charged_ah == pytest.approx(20 * 990 / 3600)  # 5.5 Ah
    assert s.charging_s == 990.0
    assert s.charged_kwh == pytest.approx(8.0 * 990 / 3600)
    assert (s.start_soc_pct, s.end_soc_pct, s.delta_soc_pct) == (20.0, 69.0, 49.0)
    assert s.mean_current_a == 20.0 and s.max_current_a == 20.0
    assert s.mean_c_rate == pytest.approx(0.2) and s.max_power_kw == pytest.approx(8.0)
    assert s.charger_type == "AC"
    assert (s.min_temp_c, s.mean_temp_c, s.max_temp_c) == (26.0, 28.0, 30.0)
    assert s.end_cell_spread_mv == pytest.approx(20.0)
    assert s.start_odometer_km == 1000.0
    assert (s.start_reason, s.end_reason) == ("gap", "gap")  # no window_end: closed

    dc = both(table(session(n=100, current=-150.0)))
    assert dc.charger_type.tolist() == ["DC"]
    assert dc.charged_ah.iloc[0] == pytest.approx(150 * 990 / 3600)
    assert dc.max_c_rate.iloc[0] == pytest.approx(1.5)


def test_gap_splits_and_boundary_step_does_not():
    first = session(n=30)
    end = first.collect_time.iloc[-1]
    split = both(table(first, session(start=end + pd.Timedelta(seconds=600), n=30, soc0=40)))
    assert split.start_reason.tolist() == ["gap", "gap"]
    assert split.end_reason.tolist() == ["gap", "gap"]
    assert split.frame_count.tolist() == [30, 30]
    # exactly gap_factor x period apart is still one session (two dropped-frame runs at most)
    joined = both(table(first, session(start=end + pd.Timedelta(seconds=300), n=30)))
    assert len(joined) == 1 and joined.gap_count.iloc[0] == 1 and joined.gap_s.iloc[0] == 300.0


def test_status_flicker_is_merged_and_integrates_one_period():
    df = session(n=30)
    df.loc[[10, 11], ["charge_status", "total_current_a"]] = [3, 5.0]
    seg = both(table(df))
    assert len(seg) == 1
    s = seg.iloc[0]
    assert s.frame_count == 28 and s.gap_count == 1 and s.gap_s == 30.0
    # 9 + 17 regular steps plus a single period across the 30 s hole
    assert s.charged_ah == pytest.approx(20 * 270 / 3600)
    assert s.charging_s == 270.0  # the time the integral covers, for the offset correction


def test_moved_between_plugins_splits_but_driving_charging_does_not():
    first = session(n=20)
    later = first.collect_time.iloc[-1] + pd.Timedelta(seconds=200)
    moved = both(table(first, session(start=later, n=20, odometer=1003.0)))
    assert moved.start_reason.tolist() == ["gap", "moved"]
    assert moved.end_reason.tolist() == ["moved", "gap"]
    # a small odometer step (rounding, creeping in a car park) keeps one session
    crept = both(table(first, session(start=later, n=20, odometer=1000.2)))
    assert len(crept) == 1
    # a null odometer on one side cannot prove a drive
    blind = session(start=later, n=20, odometer=1003.0)
    blind.loc[0, "odometer_km"] = np.nan
    assert len(both(table(first, blind))) == 1
    # status 2: charging while driving, odometer advances every regular step
    driving = both(table(session(n=20, status=2, odo_step=0.6)))
    assert len(driving) == 1 and driving.frame_count.iloc[0] == 20


def test_session_across_midnight_stays_one_segment():
    seg = both(table(session(start=pd.Timestamp("2024-03-01 23:40:00"), n=720)))
    assert len(seg) == 1
    assert seg.start_time.iloc[0].day == 1 and seg.end_time.iloc[0].day == 2
    assert seg.duration_s.iloc[0] == 7190.0


def test_soc_reset_splits_and_makes_both_sides_ineligible():
    df = session(n=40, soc0=50, soc_step=0.5)
    df.loc[20:, "soc_pct"] -= 10
    seg = both(table(df))
    assert seg.start_reason.tolist() == ["gap", "soc_reset"]
    assert seg.ineligible_reason.tolist() == ["soc_reset", "soc_reset"]
    assert not seg.is_soh_eligible.any()

    small = session(n=40, soc0=50)
    small.loc[20:, "soc_pct"] -= 2
    assert len(both(table(small))) == 1
    # compared with the last non-null SOC, across null frames
    hole = session(n=40, soc0=50)
    hole.loc[[18, 19], "soc_pct"] = np.nan
    hole.loc[20:, "soc_pct"] -= 3
    assert both(table(hole)).start_reason.tolist() == ["gap", "soc_reset"]


def test_null_soc_at_a_session_start_is_not_a_reset_against_the_previous_session():
    """The previous session ended at 100 %; the next one starts with a nulled SOC, then 73 %."""
    full = session(n=30, soc0=95, soc_step=0.2)
    nxt = session(start=T0 + pd.Timedelta(hours=5), n=30, soc0=73, soc_step=0.1)
    nxt.loc[0, "soc_pct"] = np.nan
    seg = both(table(full, nxt))
    assert seg.start_reason.tolist() == ["gap", "gap"]
    assert seg.frame_count.tolist() == [30, 30]
    assert seg.start_soc_pct.iloc[1] == 73


def test_single_frame_segment():
    lone = session(n=1)
    seg = both(table(lone, session(start=T0 + pd.Timedelta(hours=2), n=5)))
    assert seg.frame_count.tolist() == [1, 5]
    s = seg.iloc[0]
    assert s.duration_s == 0.0 and s.charged_ah == 0.0 and s.charged_kwh == 0.0
    assert s.gap_count == 0 and not s.is_soh_eligible
    assert s.mean_current_a == 20.0


def test_null_soc_current_and_voltage():
    df = session(n=10, soc0=20, soc_step=1)
    df.loc[4, "total_current_a"] = np.nan
    df.loc[7, "total_voltage_v"] = np.nan
    df.loc[[0, 9], "soc_pct"] = np.nan
    s = both(table(df)).iloc[0]
    # pairs touching the null current add nothing: 7 of the 9 steps remain
    assert s.charged_ah == pytest.approx(20 * 70 / 3600)
    # the null current and the null voltage each remove two pairs
    assert s.charged_kwh == pytest.approx(8.0 * 50 / 3600)
    assert (s.start_soc_pct, s.end_soc_pct) == (21.0, 28.0)
    assert s.mean_current_a == 20.0

    blank = session(n=10)
    blank["soc_pct"] = np.nan
    blank["total_current_a"] = np.nan
    s = both(table(blank)).iloc[0]
    assert np.isnan(s.start_soc_pct) and np.isnan(s.mean_current_a)
    assert s.charged_ah == 0.0 and pd.isna(s.charger_type)
    assert s.ineligible_reason == "missing_soc"


def eligible_session(**kw) -> pd.DataFrame:
    args = {"n": 361, "soc0": 20.0, "soc_step": 70 / 360} | kw
    return session(**args)


def _gappy() -> pd.DataFrame:
    df = eligible_session()
    return df.drop(index=range(100, 125))  # one 260 s hole: below the gap split, > 5 % share


@pytest.mark.parametrize(("frames", "reason"), [
    (eligible_session(), None),
    (eligible_session(soc0=np.nan), "missing_soc"),
    (eligible_session(soc0=65.0, soc_step=30 / 360), "start_soc_high"),
    (eligible_session(soc_step=55 / 360), "end_soc_low"),
    (eligible_session(soc0=55.0, soc_step=25 / 360), "delta_soc_small"),
    (eligible_session(n=80, soc_step=70 / 79), "too_short"),
    (_gappy(), "gappy"),
])
def test_eligibility_reasons(frames, reason):
    s = both(table(frames)).iloc[0]
    assert s.is_soh_eligible == (reason is None)
    assert (pd.isna(s.ineligible_reason) if reason is None else s.ineligible_reason == reason)


def test_open_session_at_window_end_is_not_eligible():
    frames = table(eligible_session())
    end = frames.collect_time.iloc[-1]
    near = both(frames, window_end=end + pd.Timedelta(seconds=60)).iloc[0]
    assert not near.is_soh_eligible and near.ineligible_reason == "end_of_data"
    assert near.end_reason == "end_of_data"
    far = both(frames, window_end=end + pd.Timedelta(hours=1)).iloc[0]
    assert far.is_soh_eligible and pd.isna(far.ineligible_reason)
    # a session closed by a later one is final whatever the window
    two = table(eligible_session(), eligible_session(start=end + pd.Timedelta(hours=1)))
    closed = both(two, window_end=two.collect_time.iloc[-1]).iloc[0]
    assert closed.end_reason == "gap" and closed.is_soh_eligible


@pytest.mark.parametrize(("parts", "match"), [
    ([session("V2"), session("V1")], "not sorted by vin"),
    ([session("V1"), session("V2"), session("V1", start=T0 + pd.Timedelta(hours=1))],
     "not sorted by vin"),
    ([session("V1").iloc[::-1]], "collect_time"),
])
def test_unsorted_input_raises(parts, match):
    with pytest.raises(ValueError, match=match):
        segment_charges(table(*parts))


def test_prefiltered_input_gives_identical_output():
    frames = random_frames(seed=11, vehicles=3)
    window = frames.collect_time.max()
    charging = frames[frames.charge_status.isin([1, 2])]
    pd.testing.assert_frame_equal(segment_charges(frames, window_end=window),
                                  segment_charges(charging, window_end=window))


def test_baseline_matches_on_random_fleet():
    frames = random_frames()
    fast = both(frames, window_end=frames.collect_time.max())
    reasons = set(fast.start_reason) | set(fast.end_reason)
    assert reasons == {"gap", "moved", "soc_reset", "end_of_data"}
    assert fast.vin.nunique() == 6 and fast.is_soh_eligible.any()
    assert fast.ineligible_reason.nunique() >= 4
    assert fast.frame_count.sum() == frames.charge_status.isin([1, 2]).sum()


def test_nullable_dtypes_and_ns_times_give_same_segments():
    frames = random_frames(seed=5, vehicles=3)
    numeric = [c for c in frames.columns if c not in ("vin", "collect_time", "charge_status")]
    masked = frames.astype({c: "Float64" for c in numeric} | {"collect_time": "datetime64[ns]"})
    got = segment_charges(masked)
    assert got.start_time.dtype == "datetime64[ns]"
    want = segment_charges(frames).astype({"start_time": "datetime64[ns]",
                                           "end_time": "datetime64[ns]"})
    pd.testing.assert_frame_equal(got, want)


def test_empty_and_non_charging_input():
    frames = table(session(n=5))
    for df in (frames.iloc[:0], frames.assign(charge_status=pd.array([3, 4, 3, 3, pd.NA],
                                                                       dtype="Int64"))):
        for out in (segment_charges(df), segment_charges_baseline(df)):
            assert out.empty and list(out.columns) == list(OUTPUT_COLUMNS)
            assert out.frame_count.dtype == "int64" and out.is_soh_eligible.dtype == bool
            assert out.start_time.dtype == "datetime64[us]" and out.charged_ah.dtype == "float64"


def test_label_interval_leaves_out_a_held_top_up():
    """A BMS that freezes its display at 97 while the charger tops the pack up: the label's Ah
    stop at the first frame of 97 and its ΔSOC spans the transitions (97 - 20 - 1 points)."""
    df = session(n=200, soc0=20.0, soc_step=0.5)  # 20 .. 119 without a hold
    df["soc_pct"] = np.minimum(df["soc_pct"], 97.0)
    seg = both(table(df))
    s = seg.iloc[0]
    first_97 = int(np.flatnonzero(df.soc_pct.to_numpy() == 97.0)[0])
    first_21 = int(np.flatnonzero(df.soc_pct.to_numpy() == 21.0)[0])
    assert (s.start_soc_pct, s.end_soc_pct) == (20.0, 97.0)
    assert s.label_delta_soc_pct == 76.0
    assert s.label_charging_s == 10.0 * (first_97 - first_21)
    assert s.label_ah == pytest.approx(20 * s.label_charging_s / 3600)
    # the whole segment's Ah include the held frames: a label from them reads high
    assert s.charged_ah / s.delta_soc_pct > 1.2 * s.label_ah / s.label_delta_soc_pct
    # per point of SOC the label interval matches the unheld rate (2 frames a point)
    assert s.label_ah / s.label_delta_soc_pct == pytest.approx(20 * 20 / 3600)


def test_label_interval_needs_two_points_of_soc():
    seg = both(table(session(n=30, soc0=50.0, soc_step=0.05)))  # 50 -> 51
    assert seg.delta_soc_pct.iloc[0] == 1.0
    assert np.isnan(seg.label_ah.iloc[0]) and np.isnan(seg.label_delta_soc_pct.iloc[0])


def _offset_sql(daily: pd.DataFrame) -> pd.DataFrame:
    """dwd_vehicle_current_offset.sql rendered with its vars' defaults over a hand-made daily
    table (the model's SQL itself, not a copy of its rule)."""
    from pathlib import Path

    import duckdb
    import jinja2

    sql = (Path(__file__).resolve().parents[2] / "models/dwd/dwd_vehicle_current_offset.sql"
           ).read_text()
    text = jinja2.Environment().from_string(sql).render(
        var=lambda name, default=None: default, ref=lambda name: "daily",
        exact_sum=lambda expr, scale=6: f"sum({expr})")
    con = duckdb.connect()
    con.register("daily", daily)
    return con.execute(text).df().set_index("vin")


def test_current_offset_ignores_a_standby_load_in_charge_complete_frames():
    rng = np.random.default_rng(5)

    def day(vin, complete, idle):
        complete, idle = np.asarray(complete, float), np.asarray(idle, float)
        return {"vin": vin, "zero_current_frames": complete.size,
                "zero_current_sum_a": complete.sum(), "zero_current_sumsq_a2": (complete ** 2).sum(),
                "idle_current_frames": idle.size, "idle_current_sum_a": idle.sum(),
                "idle_current_sumsq_a2": (idle ** 2).sum()}

    def noise(k):
        return rng.normal(0, 0.4, k)

    daily = pd.DataFrame([
        # offset 0.2 A, no load: both kinds of frames agree and are pooled
        day("CLEAN", 0.2 + noise(80), 0.2 + noise(6)),
        # offset -0.2 A, a 1.2 A standby load in charge-complete frames: dropped
        day("STANDBY", 1.0 + noise(80), -0.2 + noise(6)),
        # no idle frames and a 1.2 A mean: implausible as a sensor offset, no calibration
        day("NOIDLE", 1.2 + noise(80), []),
        # no idle frames, a plausible 0.15 A: used
        day("SMALL", 0.15 + noise(80), []),
    ])
    o = _offset_sql(daily)
    assert bool(o.loc["CLEAN", "is_charge_complete_used"])
    assert o.loc["CLEAN", "current_offset_a"] == pytest.approx(0.2, abs=0.1)
    assert not bool(o.loc["STANDBY", "is_charge_complete_used"])
    # six idle frames, shrunk towards 0 by the prior: between 0 and the true -0.2 A, not +1.0
    assert -0.35 < o.loc["STANDBY", "current_offset_a"] < 0.05
    assert o.loc["STANDBY", "standby_load_a"] == pytest.approx(1.2, abs=0.3)
    assert pd.isna(o.loc["NOIDLE", "current_offset_a"])
    assert o.loc["SMALL", "current_offset_a"] == pytest.approx(0.15, abs=0.1)
    assert pd.isna(o.loc["SMALL", "standby_load_a"])
