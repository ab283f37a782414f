"""Fleet simulator: writes a GB/T 32960 landing zone and its ground truth.

Three stages, each vectorized over the whole fleet:

1. ``plan``: an activity timeline per vehicle (trips, AC/DC charging sessions, parking) built by
   a loop over *activity index* whose body works on all vehicles at once. The battery state
   (true SOC, capacity after calendar + cycle fade, pack temperature, odometer) is carried from
   activity to activity, so every charge session and trip is physically consistent with the last.
2. ``frames``: the 10 s report frames of every activity, expanded with numpy: speed profile and
   traction power, current, coulomb-counted SOC, a lumped thermal model, per-cell voltages from
   OCV(SOC_i) − I·R_i with cell-to-cell capacity/resistance spread, probe temperatures, the BMS's
   own SOC estimate (drift, 1 % steps), current-sensor offset and noise, insulation resistance,
   the GB/T 32960 alarm bits and levels from BMS thresholds, and injected faults.
3. ``dirty``: defects a real platform sees (duplicates, late re-sends, markers, spikes, odometer
   glitches, clock errors, status conflicts, pack-voltage mismatches, a reversed current sign),
   each recorded in ``dirty_records.parquet`` with the file it was written to.

The output is exactly the contract of ``shared/contract/landing.md``.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from scipy.signal import lfilter

from .catalog import (
    FADE,
    FAULT_TYPES,
    OCV_SOC,
    REGIONS,
    USAGE_PROFILES,
    VEHICLE_MODELS,
)
from .landing import REALTIME_ARROW_SCHEMA, REALTIME_WRITE_OPTIONS
from .scenarios import bms_plan, get_scenario, scale_faults, vehicle_params, write_truth

DT_S = 10  # normal report period while driving or charging
DAY_S = 86400
T_REF_K = 298.15
PACK_THERMAL_CAPACITY_J_K = 3.6e5
TAU_ACTIVE_S = 2.0 * 3600
TAU_PARKED_S = 5.0 * 3600
BUSBAR_R_OHM = 0.004

# Probability per frame (or per vehicle for sign_flip) that a defect is injected, at dirty=1.
DIRTY_RATES = {
    "duplicate": 2.0e-3,
    "late_resend": 1.0e-3,
    "abnormal_marker": 4.0e-4,
    "invalid_marker": 4.0e-4,
    "out_of_range": 4.0e-4,
    "odometer_glitch": 3.0e-4,
    "clock_error": 2.0e-4,
    "status_conflict": 2.0e-4,
    "pack_voltage_mismatch": 2.0e-4,
}

# the landing contract (landing.REALTIME_SCHEMA), one definition for every writer
LANDING_SCHEMA = REALTIME_ARROW_SCHEMA

VEHICLE_MASTER_SCHEMA = pa.schema(
    [
        ("vin", pa.string()),
        ("vehicle_model", pa.string()),
        ("chemistry", pa.string()),
        ("rated_capacity_ah", pa.float64()),
        ("rated_energy_kwh", pa.float64()),
        ("cells_in_series", pa.int32()),
        ("temp_probes", pa.int32()),
        ("current_discharge_positive", pa.bool_()),
        ("in_service_date", pa.date32()),
        ("usage_type", pa.string()),
        ("region", pa.string()),
    ]
)

# scalar fields that can carry a marker, with their protocol width (bytes)
MARKER_FIELDS = {
    "vehicle_status": 1, "charge_status": 1, "speed": 2, "odometer": 4, "total_voltage": 2,
    "total_current": 2, "soc": 1, "max_cell_voltage": 2, "min_cell_voltage": 2, "max_temp": 1,
    "min_temp": 1, "accel_pedal": 1,
}
ABNORMAL = {1: 0xFE, 2: 0xFFFE, 4: 0xFFFFFFFE}
INVALID = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF}
# (field, low code, high code): codes beyond the seed's physical/protocol limits
SPIKES = (
    ("speed", 2500, 60000),  # > 220 km/h
    ("soc", 101, 250),  # > 100 %
    ("total_current", 20001, 65000),  # > +1000 A
    ("total_voltage", 10001, 60000),  # > 1000 V
    ("max_temp", 251, 253),  # > 210 °C, beyond the protocol range
    ("max_cell_voltage", 5500, 14999),  # > 5 V on a Li-ion cell
    ("min_cell_voltage", 0, 300),  # < 0.5 V
)
# OCV at 0.01 % SOC steps, float32, indexed by round(SOC·100)
OCV_TABLE = {c: np.interp(np.arange(10001) / 100.0, *xy).astype(np.float32)
             for c, xy in OCV_SOC.items()}


@dataclass
class SimConfig:
    vehicles: int = 50
    days: int = 14
    seed: int = 7
    start_date: date = date(2026, 3, 1)
    fault_share: float = 0.03
    dirty_scale: float = 1.0
    max_frames_per_chunk: int = 1_000_000
    scenario: str = "baseline"  # scenarios.SCENARIOS: how the BMS and the pack behave


@dataclass
class SimResult:
    vehicles: int
    frames: int
    files: int
    seconds: float
    dirty_records: int
    charge_sessions: int
    faults: int
    counts: dict = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else float("nan")


# --------------------------------------------------------------------------------------------
# fleet
# --------------------------------------------------------------------------------------------


def make_fleet(cfg: SimConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = cfg.vehicles
    models = VEHICLE_MODELS
    mi = rng.choice(len(models), size=n, p=np.array([m.share for m in models]))
    ui = rng.choice(len(USAGE_PROFILES), size=n, p=np.array([u.share for u in USAGE_PROFILES]))
    ri = rng.choice(len(REGIONS), size=n, p=np.array([r[3] for r in REGIONS]))
    age_days = rng.integers(20, 1200, size=n)
    # VINs: WMI "LNB" + model letter + serial; 17 chars of the VIN alphabet (no I, O, Q)
    vins = np.array([f"LNB{models[m].code[2]}S{7 + i % 3}C{(i * 7919) % 10**10:010d}"
                     for i, m in enumerate(mi)])
    fl = pd.DataFrame(
        {
            "vin": vins,
            "model_idx": mi,
            "usage_idx": ui,
            "region_idx": ri,
            "age_days": age_days,
        }
    )
    fl["vehicle_model"] = [models[m].code for m in mi]
    fl["chemistry"] = [models[m].chemistry for m in mi]
    fl["rated_ah"] = [models[m].rated_ah for m in mi]
    fl["cells"] = [models[m].cells for m in mi]
    fl["probes"] = [models[m].probes for m in mi]
    fl["nominal_v"] = [models[m].nominal_v for m in mi]
    fl["usage_type"] = [USAGE_PROFILES[u].name for u in ui]
    fl["region"] = [REGIONS[r][0] for r in ri]
    fl["in_service_date"] = [cfg.start_date - timedelta(days=int(a)) for a in age_days]
    fl["current_discharge_positive"] = [models[m].current_discharge_positive for m in mi]
    usage = [USAGE_PROFILES[u] for u in ui]
    fl["daily_km"] = np.array([u.daily_km_median for u in usage]) * rng.lognormal(0, 0.25, n)
    fl["has_home_charger"] = (np.array([u.home_ac_kw for u in usage]) > 0) & (rng.random(n) < 0.8)
    fl["bol_factor"] = rng.uniform(1.0, 1.035, n)  # delivered capacity above nameplate
    fl["soc_drift_per_efc"] = rng.normal(0.0, 1.5, n)  # BMS coulomb-counting drift, % per EFC
    fl["current_offset_a"] = rng.normal(0.0, 0.25, n)
    fl["insulation_base_kohm"] = rng.uniform(8000, 40000, n)
    return fl


# --------------------------------------------------------------------------------------------
# ageing
# --------------------------------------------------------------------------------------------


def _ocv(chem: np.ndarray | str, soc: np.ndarray) -> np.ndarray:
    if isinstance(chem, str):
        x, y = OCV_SOC[chem]
        return np.interp(soc, x, y)
    out = np.empty_like(soc, dtype=float)
    for c in ("NCM", "LFP"):
        m = chem == c
        if m.any():
            x, y = OCV_SOC[c]
            out[m] = np.interp(soc[m], x, y)
    return out


def calendar_weight(chem: np.ndarray, temp_c: np.ndarray, soc: np.ndarray) -> np.ndarray:
    """Days-equivalent calendar stress per day at (temperature, SOC) relative to 25 °C, 50 %."""
    tk = np.asarray(temp_c, float) + 273.15
    ea = np.where(chem == "NCM", FADE["NCM"].ea_cal_k, FADE["LFP"].ea_cal_k)
    arr = np.exp(-ea * (1.0 / tk - 1.0 / T_REF_K))
    # NCM: Schmalstieg's (7.543·V − 23.75) voltage term; LFP: a mild linear SOC term
    v = _ocv(chem, np.asarray(soc, float))
    ncm = (7.543 * v - 23.75) / (7.543 * 3.72 - 23.75)
    lfp = 1.0 + 0.5 * (np.asarray(soc, float) - 50.0) / 50.0
    return arr * np.where(chem == "NCM", np.clip(ncm, 0.3, 3.0), np.clip(lfp, 0.5, 1.5))


def cycle_weight(chem: np.ndarray, temp_c: np.ndarray, c_rate: np.ndarray) -> np.ndarray:
    """Throughput multiplier: Arrhenius above 25 °C, lithium-plating penalty in the cold,
    and a C-rate term (fast charging ages faster)."""
    tk = np.asarray(temp_c, float) + 273.15
    ea = np.where(chem == "NCM", FADE["NCM"].ea_cyc_k, FADE["LFP"].ea_cyc_k)
    arr = np.exp(ea * (1.0 / T_REF_K - 1.0 / tk))
    cold = 1.0 + 0.06 * np.clip(10.0 - np.asarray(temp_c, float), 0, None)
    return arr * cold * (1.0 + 0.5 * np.clip(np.asarray(c_rate, float) - 0.5, 0, None))


def fade_fraction(chem: np.ndarray, tau_days: np.ndarray, efc: np.ndarray) -> np.ndarray:
    q = np.zeros_like(np.asarray(tau_days, float))
    for c, f in FADE.items():
        m = chem == c
        q[m] = f.k_cal * np.power(tau_days[m], f.z_cal) + f.k_cyc * np.power(efc[m], f.z_cyc)
    return q


def ambient_c(region_idx: np.ndarray, t_abs_s: np.ndarray, start: date,
              noise: np.ndarray | None = None) -> np.ndarray:
    """Ambient temperature: seasonal cosine (coldest mid-January) plus a diurnal cycle."""
    mean = np.array([r[1] for r in REGIONS])[region_idx]
    amp = np.array([r[2] for r in REGIONS])[region_idx]
    doy0 = start.timetuple().tm_yday
    doy = doy0 + t_abs_s / DAY_S
    hour = (t_abs_s % DAY_S) / 3600.0
    ta = mean - amp * np.cos(2 * np.pi * (doy - 15) / 365.25) + 4.0 * np.sin(
        2 * np.pi * (hour - 9) / 24
    )
    return ta if noise is None else ta + noise


# --------------------------------------------------------------------------------------------
# stage 1: activity plan
# --------------------------------------------------------------------------------------------

# Liu et al. 2025 (battery-brief §7): start SOC median 38 (IQR 25-52, P10 14, P90 68), end SOC
# median 96 (IQR 83-99, P10 63). The trigger is where a driver decides to charge; the observed
# start SOC lands a few points lower (the decision is taken before the next trip).
START_SOC_Q = ([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0], [6, 11, 21, 33, 47, 63, 80])
END_SOC_Q = ([0.0, 0.133, 0.333, 0.667, 1.0], [45, 63, 83, 96, 99])  # when not charged full


def _draw_trigger(rng, n):
    return np.interp(rng.random(n), *START_SOC_Q)


def _draw_target(rng, n):
    tgt = np.interp(rng.random(n), *END_SOC_Q)
    return np.where(rng.random(n) < 0.30, 100.0, tgt)


def plan_activities(fl: pd.DataFrame, faults: pd.DataFrame, cfg: SimConfig,
                    rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (activities, vehicle_daily truth)."""
    n = len(fl)
    horizon = cfg.days * DAY_S
    usage = [USAGE_PROFILES[u] for u in fl.usage_idx]
    day_start = np.array([u.day_start_h for u in usage])
    day_end = np.array([u.day_end_h for u in usage])
    trip_mean = np.array([u.trip_km_mean for u in usage])
    speed_mean = np.array([u.speed_kmh_mean for u in usage])
    gap_med = np.array([u.gap_min_median for u in usage]) * 60.0
    dc_share = np.array([u.dc_share_day for u in usage])
    home_kw = np.array([u.home_ac_kw for u in usage])
    daily_km_med = fl.daily_km.to_numpy()
    chem = fl.chemistry.to_numpy()
    rated = fl.rated_ah.to_numpy()
    vnom = fl.nominal_v.to_numpy()
    region = fl.region_idx.to_numpy()
    models = [VEHICLE_MODELS[m] for m in fl.model_idx]
    kwh_km = np.array([m.kwh_per_km for m in models])
    cmax = np.array([m.max_dc_c_rate for m in models])
    r_pack25 = np.array([m.cells * m.cell_r_mohm / 1000.0 for m in models]) + BUSBAR_R_OHM
    home = fl.has_home_charger.to_numpy()

    # cell_inconsistency faults shrink one cell's capacity, which caps the usable pack capacity
    inc_onset = np.full(n, np.inf)
    f_inc = faults[faults.fault_type == "cell_inconsistency"]
    inc_onset[f_inc.vehicle_idx.to_numpy()] = f_inc.onset_s.to_numpy()

    # history before the simulated window
    age = fl.age_days.to_numpy().astype(float)
    t_hist = np.array([r[1] for r in REGIONS])[region]
    tau_cal = age * calendar_weight(chem, t_hist, np.full(n, 60.0))
    ah_eff = age * daily_km_med * kwh_km * 1000.0 / vnom * 2.0 * cycle_weight(
        chem, t_hist, np.full(n, 0.3))
    odo = age * daily_km_med * rng.uniform(0.8, 1.2, n) + rng.uniform(0, 50, n)

    bol = fl.bol_factor.to_numpy()

    def capacity(ix, t_now):
        q = fade_fraction(chem[ix], tau_cal[ix], ah_eff[ix] / (2.0 * rated[ix]))
        inc = 1.0 - 0.15 * np.clip((t_now - inc_onset[ix]) / (45 * DAY_S), 0.0, 1.0)
        return rated[ix] * bol[ix] * (1.0 - q) * np.minimum(1.0, inc)

    t = day_start * 3600 + rng.normal(0, 1800, n)
    soc = rng.uniform(45, 90, n)
    temp = ambient_c(region, t, cfg.start_date)
    trigger = _draw_trigger(rng, n)
    home_trigger = np.clip(rng.normal(38, 15, n), 10, 80)
    cur_day = np.full(n, -1)
    km_left = np.zeros(n)
    ah_since_full = rng.uniform(0, 60, n)
    force_charge = np.zeros(n, bool)
    cap = capacity(np.arange(n), t)

    cols: dict[str, list] = {k: [] for k in (
        "vehicle_idx", "kind", "t_start", "n_frames", "soc0", "soc1", "cap_ah", "temp0", "ambient",
        "odo0", "dist_km", "v_avg", "energy_kwh", "i_cc", "taper_soc", "t_cc", "full",
        "ah_since_full0", "flicker_at", "r_pack")}
    cap_log_v, cap_log_t, cap_log_c = [np.arange(n)], [np.full(n, -1.0)], [cap.copy()]

    it = 0
    while True:
        alive = t < horizon
        if not alive.any():
            break
        it += 1
        if it > 20000:
            raise RuntimeError("activity planning did not converge")
        idx = np.flatnonzero(alive)
        tt = t[idx]
        day = np.floor(tt / DAY_S).astype(int)
        newday = day != cur_day[idx]
        km_left[idx[newday]] = daily_km_med[idx[newday]] * rng.lognormal(0, 0.3, newday.sum())
        cur_day[idx] = day
        hour = (tt % DAY_S) / 3600.0
        night = (hour >= day_end[idx]) | (hour < day_start[idx] - 1.0) | (km_left[idx] < 1.0)
        night &= ~force_charge[idx]
        # overnight: home AC charge if low, else park until the next morning
        home_charge = night & home[idx] & (soc[idx] < home_trigger[idx])
        park = night & ~home_charge
        if park.any():
            pi = idx[park]
            nxt_day = np.where(hour[park] >= day_start[pi] - 1.0, day[park] + 1, day[park])
            tnew = nxt_day * DAY_S + day_start[pi] * 3600 + rng.normal(0, 2400, park.sum())
            tnew = np.maximum(tnew, t[pi] + 600)
            gap = tnew - t[pi]
            # calendar ageing and cooling over the parked period
            ta_mid = ambient_c(region[pi], t[pi] + gap / 2, cfg.start_date)
            tau_cal[pi] += gap / DAY_S * calendar_weight(chem[pi], ta_mid, soc[pi])
            temp[pi] = ta_mid + (temp[pi] - ta_mid) * np.exp(-gap / TAU_PARKED_S)
            t[pi] = tnew
            km_left[pi] = 0.0  # forces a fresh daily budget at the new day
            cur_day[pi] = -1
            continue_mask = ~park
            idx, tt, hour = idx[continue_mask], tt[continue_mask], hour[continue_mask]
            home_charge = home_charge[continue_mask]
            night = night[continue_mask]
        if idx.size == 0:
            continue

        trip_km = np.clip(rng.exponential(trip_mean[idx]), 1.5, None)
        trip_km = np.minimum(trip_km, np.maximum(km_left[idx], 1.5))
        ta = ambient_c(region[idx], tt, cfg.start_date, rng.normal(0, 1.5, idx.size))
        kwhkm = kwh_km[idx] * (1 + 0.012 * np.clip(15 - ta, 0, None) + 0.004 * np.clip(ta - 28, 0,
                                                                                         None))
        dsoc = trip_km * kwhkm * 1000 / vnom[idx] / cap[idx] * 100
        need = (soc[idx] - dsoc < np.maximum(trigger[idx], 6.0)) | force_charge[idx] | home_charge
        charge = need
        drive = ~charge

        # --- charging sessions
        ci = idx[charge]
        if ci.size:
            ac = home_charge[charge] | (rng.random(ci.size) >= dc_share[ci])
            p_kw = np.where(
                ac,
                np.where(home_charge[charge], home_kw[ci], rng.choice([7.0, 11.0], ci.size)),
                rng.uniform(40, 150, ci.size),
            )
            i_cc = np.minimum(p_kw * 1000 / vnom[ci], np.where(ac, 0.5, cmax[ci]) * cap[ci])
            s0 = soc[ci]
            tgt = np.maximum(_draw_target(rng, ci.size), s0 + 5)
            interrupted = rng.random(ci.size) < 0.03
            tgt = np.where(interrupted, s0 + (tgt - s0) * rng.uniform(0.3, 0.7, ci.size), tgt)
            tgt = np.minimum(tgt, 100.0)
            full = tgt >= 99.95
            tgt_eff = np.minimum(tgt, 99.7)
            s_b = np.where(ac, 95.0, 80.0)
            s1 = np.maximum(s0, s_b)
            t_cc = np.clip(np.minimum(tgt_eff, s_b) - s0, 0, None) / 100 * cap[ci] / i_cc * 3600
            k = i_cc * 100 / ((100 - s1) * cap[ci] * 3600)
            t_tap = np.where(tgt_eff > s1, -np.log((100 - tgt_eff) / (100 - s1)) / k, 0.0)
            dur = t_cc + t_tap
            nfr = np.floor(dur / DT_S).astype(int) + 1
            nfr = np.maximum(nfr, 2)
            tau_last = (nfr - 1) * DT_S
            soc_end = np.where(
                tau_last <= t_cc,
                s0 + i_cc * tau_last / 3600 / cap[ci] * 100,
                100 - (100 - s1) * np.exp(-k * (tau_last - t_cc)),
            )
            soc_end = np.minimum(soc_end, 100.0)
            ah = (soc_end - s0) / 100 * cap[ci]
            ncomplete = np.where(full, rng.integers(1, 7, ci.size), 0)
            t_start = tt[charge] + rng.uniform(60, 900, ci.size)
            ta_c = ta[charge]
            q = i_cc**2 * r_pack25[ci]
            t_eq = np.where(ta_c > 25, 25 + 0.4 * (ta_c - 25), ta_c) + q * TAU_ACTIVE_S / (
                PACK_THERMAL_CAPACITY_J_K)
            temp0 = temp[ci]
            a_n = np.exp(-dur / TAU_ACTIVE_S)
            temp_end = t_eq + (temp0 - t_eq) * a_n
            flicker = np.where((rng.random(ci.size) < 0.03) & (nfr > 12),
                               rng.integers(3, np.maximum(nfr - 5, 4)), -1)
            _append(cols, vehicle_idx=ci, kind=np.where(ac, 1, 2), t_start=t_start,
                    n_frames=nfr + ncomplete, soc0=s0, soc1=soc_end, cap_ah=cap[ci],
                    temp0=temp0, ambient=ta_c, odo0=odo[ci], dist_km=np.zeros(ci.size),
                    v_avg=np.zeros(ci.size), energy_kwh=-ah * vnom[ci] / 1000, i_cc=i_cc,
                    taper_soc=s1, t_cc=t_cc, full=full, ah_since_full0=ah_since_full[ci],
                    flicker_at=flicker, r_pack=r_pack25[ci])
            # state after the session
            c_rate = i_cc / cap[ci]
            ah_eff[ci] += ah * cycle_weight(chem[ci], (temp0 + temp_end) / 2, c_rate)
            tau_cal[ci] += dur / DAY_S * calendar_weight(chem[ci], (temp0 + temp_end) / 2,
                                                         (s0 + soc_end) / 2)
            soc[ci] = soc_end
            temp[ci] = temp_end
            ah_since_full[ci] = np.where(full, 0.0, ah_since_full[ci] + ah)
            # the next session's trigger lies below where this one ended
            trigger[ci] = np.minimum(_draw_trigger(rng, ci.size), soc_end - 15)
            home_trigger[ci] = np.minimum(np.clip(rng.normal(38, 15, ci.size), 10, 80),
                                          soc_end - 10)
            tend = t_start + (nfr + ncomplete - 1) * DT_S
            gap = np.where(interrupted, rng.uniform(900, 2400, ci.size),
                           rng.lognormal(np.log(gap_med[ci] / 2), 0.6))
            force_charge[ci] = interrupted
            t[ci] = tend + gap
            cap[ci] = capacity(ci, t[ci])
            cap_log_v.append(ci), cap_log_t.append(tend), cap_log_c.append(cap[ci].copy())

        # --- trips
        di = idx[drive]
        if di.size:
            km = trip_km[drive]
            v_avg = np.clip(speed_mean[di] * rng.lognormal(0, 0.2, di.size), 12, 75)
            nfr = np.maximum(np.round(km / v_avg * 3600 / DT_S).astype(int), 4)
            dist = v_avg * nfr * DT_S / 3600
            e = dist * kwhkm[drive]
            ah = e * 1000 / vnom[di]
            s0 = soc[di]
            soc_end = s0 - ah / cap[di] * 100
            ta_d = ta[drive]
            i_mean = ah / (nfr * DT_S / 3600)
            q = (1.6 * i_mean) ** 2 * r_pack25[di]
            t_eq = np.where(ta_d > 25, 25 + 0.4 * (ta_d - 25), ta_d) + q * TAU_ACTIVE_S / (
                PACK_THERMAL_CAPACITY_J_K)
            temp0 = temp[di]
            dur = nfr * DT_S
            temp_end = t_eq + (temp0 - t_eq) * np.exp(-dur / TAU_ACTIVE_S)
            t_start = tt[drive]
            _append(cols, vehicle_idx=di, kind=np.zeros(di.size, int), t_start=t_start,
                    n_frames=nfr, soc0=s0, soc1=soc_end, cap_ah=cap[di], temp0=temp0,
                    ambient=ta_d, odo0=odo[di], dist_km=dist, v_avg=v_avg, energy_kwh=e,
                    i_cc=np.zeros(di.size), taper_soc=np.zeros(di.size), t_cc=np.zeros(di.size),
                    full=np.zeros(di.size, bool), ah_since_full0=ah_since_full[di],
                    flicker_at=np.full(di.size, -1), r_pack=r_pack25[di])
            ah_eff[di] += ah * cycle_weight(chem[di], (temp0 + temp_end) / 2, i_mean / cap[di])
            tau_cal[di] += dur / DAY_S * calendar_weight(chem[di], (temp0 + temp_end) / 2,
                                                         (s0 + soc_end) / 2)
            soc[di] = soc_end
            temp[di] = temp_end
            odo[di] += dist
            km_left[di] -= dist
            ah_since_full[di] += ah
            gap = rng.lognormal(np.log(gap_med[di]), 0.7)
            tend = t_start + (nfr - 1) * DT_S
            ta_g = ambient_c(region[di], tend, cfg.start_date)
            tau_cal[di] += gap / DAY_S * calendar_weight(chem[di], ta_g, soc[di])
            temp[di] = ta_g + (temp[di] - ta_g) * np.exp(-gap / TAU_PARKED_S)
            t[di] = tend + DT_S + gap
            cap[di] = capacity(di, t[di])
            cap_log_v.append(di), cap_log_t.append(tend), cap_log_c.append(cap[di].copy())

    acts = pd.DataFrame({k: np.concatenate(v) for k, v in cols.items()})
    acts = acts.sort_values(["vehicle_idx", "t_start"], kind="stable").reset_index(drop=True)

    # daily truth: capacity as of the end of each day (last activity that ended before it)
    lv, lt, lc = (np.concatenate(x) for x in (cap_log_v, cap_log_t, cap_log_c))
    order = np.lexsort((lt, lv))
    lv, lt, lc = lv[order], lt[order], lc[order]
    key = lv * (cfg.days + 2) * DAY_S * 10.0 + lt
    vv, dd = np.meshgrid(np.arange(n), np.arange(cfg.days), indexing="ij")
    qkey = vv.ravel() * (cfg.days + 2) * DAY_S * 10.0 + (dd.ravel() + 1) * DAY_S - 1
    pos = np.searchsorted(key, qkey, side="right") - 1
    daily = pd.DataFrame(
        {
            "vehicle_idx": vv.ravel(),
            "day": dd.ravel(),
            "true_capacity_ah": lc[pos],
        }
    )
    return acts, daily


def _append(cols: dict, **kw) -> None:
    for k, v in kw.items():
        cols[k].append(np.asarray(v))


# --------------------------------------------------------------------------------------------
# faults
# --------------------------------------------------------------------------------------------


def assign_faults(fl: pd.DataFrame, cfg: SimConfig, rng: np.random.Generator) -> pd.DataFrame:
    n = len(fl)
    nf = 0 if cfg.fault_share <= 0 else max(1, round(cfg.fault_share * n))
    nf = min(nf, n)
    veh = rng.choice(n, size=nf, replace=False)
    ftype = np.array([FAULT_TYPES[i % len(FAULT_TYPES)] for i in range(nf)])
    horizon = cfg.days * DAY_S
    onset = rng.uniform(-20 * DAY_S, 0.5 * horizon, nf)
    cells = fl.cells.to_numpy()[veh]
    probes = fl.probes.to_numpy()[veh]
    cell_no = rng.integers(1, cells + 1)
    probe_no = rng.integers(1, probes + 1)
    f = pd.DataFrame(
        {
            "vehicle_idx": veh,
            "fault_type": ftype,
            "onset_s": onset,
            "cell_no": cell_no.astype(float),
            "probe_no": probe_no.astype(float),
            "severity": rng.uniform(0.7, 1.3, nf),
            "subtype": rng.choice(["stuck", "dropout", "jump"], nf),
            "hazard_s": np.nan,
        }
    )
    # time to hazard for faults that become dangerous on their own
    f.loc[f.fault_type == "internal_short", "hazard_s"] = (
        f.onset_s + rng.uniform(25, 60, nf) * DAY_S)[f.fault_type == "internal_short"]
    f.loc[f.fault_type == "insulation_degradation", "hazard_s"] = (
        f.onset_s + rng.uniform(20, 60, nf) * DAY_S)[f.fault_type == "insulation_degradation"]
    f.loc[~f.fault_type.isin(["thermal_runaway_precursor", "internal_short",
                              "cell_inconsistency"]), "cell_no"] = np.nan
    f.loc[f.fault_type != "sensor_fault", "probe_no"] = np.nan
    return f


def place_thermal_events(acts: pd.DataFrame, faults: pd.DataFrame, cfg: SimConfig) -> pd.DataFrame:
    """A thermal-runaway precursor ends in a thermal event at the end of the first charging
    session at least 10 days after onset; the vehicle reports nothing afterwards."""
    acts = acts.copy()
    keep = np.ones(len(acts), bool)
    for i in np.flatnonzero(faults.fault_type.to_numpy() == "thermal_runaway_precursor"):
        v = faults.vehicle_idx.iat[i]
        earliest = max(faults.onset_s.iat[i] + 10 * DAY_S, 1 * DAY_S)
        cand = np.flatnonzero((acts.vehicle_idx.to_numpy() == v) & (acts.kind.to_numpy() > 0)
                              & (acts.t_start.to_numpy() >= earliest)
                              & (acts.n_frames.to_numpy() >= 60))
        if cand.size == 0:
            continue
        a = cand[0]
        hz = acts.t_start.iat[a] + (acts.n_frames.iat[a] - 1) * DT_S
        faults.iat[i, faults.columns.get_loc("hazard_s")] = hz
        later = (acts.vehicle_idx.to_numpy() == v) & (acts.t_start.to_numpy() > acts.t_start.iat[a])
        keep &= ~later
    return acts[keep].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# stage 2: frames
# --------------------------------------------------------------------------------------------


def _segment_cumsum(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Exclusive cumulative sum restarting at each segment start (vectorized)."""
    c = np.cumsum(x)
    c = np.concatenate([[0.0], c[:-1]])
    return c - np.repeat(c[starts], np.diff(np.append(starts, len(x))))


def _segment_filter(u: np.ndarray, a: float, starts: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """y[k0] = y0; y[k+1] = a·y[k] + u[k] inside each segment, for all segments in one pass.

    A single lfilter runs over the concatenation; the part carried in from earlier segments
    is a^(k-k0)·y_glob[k0-1] and is subtracted, so no Python loop over segments is needed."""
    n = len(u)
    lens = np.diff(np.append(starts, n))
    k = np.arange(n) - np.repeat(starts, lens)
    yg = lfilter([1.0], [1.0, -a], u)
    prev = np.concatenate([[0.0], yg])  # prev[j] = yg[j-1]
    seg_prev = np.repeat(prev[starts], lens)  # yg[k0-1]
    ak = np.power(a, k)
    # sum_{j=k0}^{k-1} a^{k-1-j} u[j] = yg[k-1] - a^{k-k0}·yg[k0-1]
    acc = prev[np.arange(n)] - ak * seg_prev
    return ak * np.repeat(y0, lens) + acc


@dataclass
class FrameBlock:
    """Frames of one vehicle model (fixed cell/probe count), still in physical units."""

    cols: dict
    cells: np.ndarray  # (n, cells) int32 millivolts
    probes: np.ndarray  # (n, probes) °C (float, NaN = dropout)


def make_frames(acts: pd.DataFrame, act_idx: np.ndarray, tau: np.ndarray, fl: pd.DataFrame,
                faults: pd.DataFrame, cfg: SimConfig, rng: np.random.Generator,
                model_idx: int, temp_ref: tuple | None = None) -> FrameBlock:
    """Frames at offsets ``tau`` (s) into activities ``act_idx`` (all of one vehicle model).

    ``temp_ref`` = (tau, temperature) of the regular 10 s frames, used to place extra frames
    (1 s alarm frames) on the same thermal trajectory."""
    m = VEHICLE_MODELS[model_idx]
    n = len(act_idx)
    A = acts.iloc[act_idx]
    vidx = A.vehicle_idx.to_numpy()
    kind = A.kind.to_numpy()
    t_abs = A.t_start.to_numpy() + tau
    cap = A.cap_ah.to_numpy()
    drive = kind == 0
    # segment starts (act_idx sorted, tau ascending inside)
    starts = np.flatnonzero(np.r_[True, act_idx[1:] != act_idx[:-1]])
    lens = np.diff(np.append(starts, n))
    kpos = np.arange(n) - np.repeat(starts, lens)
    nfr = A.n_frames.to_numpy()

    # --- speed and traction power (drive); the profile is scaled to the planned trip energy
    phase = (act_idx * 0.6180339887) % 1.0
    x = tau / 60.0
    shape = (1 + 0.45 * np.sin(2 * np.pi * (x / 7.0 + phase))
             + 0.25 * np.sin(2 * np.pi * (x / 2.3 + 2 * phase)))
    stop = np.sin(2 * np.pi * (x / 3.1 + 3 * phase)) > 0.8  # traffic lights
    ramp = np.clip(np.minimum(kpos, nfr - 1 - kpos) / 3.0, 0, 1)
    shape = np.where(stop, 0.0, np.clip(shape, 0.05, None)) * ramp
    if drive.any():
        mean_shape = np.add.reduceat(shape, starts) / lens
        shape = shape / np.repeat(np.where(mean_shape > 0, mean_shape, 1), lens)
    speed = np.where(drive, A.v_avg.to_numpy() * shape, 0.0)
    v_ms = speed / 3.6
    acc = np.gradient(v_ms) / DT_S if n > 1 else np.zeros(n)
    acc = np.where(np.r_[True, act_idx[1:] != act_idx[:-1]] | np.r_[act_idx[1:] != act_idx[:-1],
                                                                    True], 0.0, acc)
    p_trac = (m.mass_kg * 9.81 * 0.011 * v_ms + 0.5 * 1.2 * 0.65 * v_ms**3
              + m.mass_kg * acc * v_ms)
    p_batt = np.where(p_trac > 0, p_trac / 0.9, np.maximum(p_trac * 0.6, -40000.0)) + 800.0
    e_prof = np.add.reduceat(np.where(drive, p_batt, 0.0), starts) * DT_S / 3.6e6
    e_plan = A.energy_kwh.to_numpy()[starts]
    scale = np.where(e_prof > 0, e_plan / np.where(e_prof > 0, e_prof, 1), 1.0)
    p_batt = p_batt * np.repeat(scale, lens)
    vnom = m.nominal_v
    i_drive = p_batt / vnom

    # --- charging: CC then exponential taper, analytic in time
    i_cc = A.i_cc.to_numpy()
    s0 = A.soc0.to_numpy()
    s1 = A.taper_soc.to_numpy()
    t_cc = A.t_cc.to_numpy()
    kk = np.where(s1 < 100, i_cc * 100 / (np.maximum(100 - s1, 1e-6) * cap * 3600), 0.0)
    soc_ch = np.where(tau <= t_cc, s0 + i_cc * tau / 3600 / cap * 100,
                      100 - (100 - s1) * np.exp(-kk * (tau - t_cc)))
    soc_ch = np.minimum(soc_ch, A.soc1.to_numpy() + 1e-9)
    i_ch = np.where(tau <= t_cc, -i_cc, -i_cc * (100 - soc_ch) / np.maximum(100 - s1, 1e-6))
    n_charge_frames = nfr  # includes "charge complete" tail frames
    full = A.full.to_numpy()
    # frames after the SOC reached its end value are the "charge complete" tail (full charges)
    reached = (soc_ch >= A.soc1.to_numpy() - 1e-6) & full
    tail = np.zeros(n, bool)
    if full.any():
        first_reach = np.where(reached, kpos, 10**9)
        fr = np.minimum.reduceat(first_reach, starts)
        tail = full & (kpos > np.repeat(fr, lens))
    sc = get_scenario(cfg.scenario)
    scen = not sc.is_baseline
    if scen:
        # the terminal current of a charge carries the coulombic losses; in charge-complete
        # frames the pack feeds the vehicle's standby load
        i_ch = i_ch / fl.sc_charge_efficiency.to_numpy()[vidx]
        i_ch = np.where(tail, fl.sc_standby_load_a.to_numpy()[vidx], i_ch)
    else:
        i_ch = np.where(tail, 0.0, i_ch)
    flick = A.flicker_at.to_numpy()
    in_flicker = (flick >= 0) & (kpos >= flick) & (kpos < flick + 2)
    i_ch = np.where(in_flicker, 0.0, i_ch)
    del n_charge_frames

    current = np.where(drive, i_drive, i_ch)
    # coulomb-counted SOC while driving (exclusive cumsum inside each activity)
    ah_cum = _segment_cumsum(np.where(drive, current, 0.0) * DT_S / 3600, starts)
    soc_true = np.where(drive, s0 - ah_cum / cap * 100, soc_ch)
    soc_true = np.clip(soc_true, 0.0, 100.0)
    odo = A.odo0.to_numpy() + _segment_cumsum(speed * DT_S / 3600, starts)

    # --- lumped thermal model: C·dT/dt = I²R − (T − T_eq)·C/τ, with chiller above 25 °C
    ta = A.ambient.to_numpy()
    t_eff = np.where(ta > 25, 25 + 0.4 * (ta - 25), ta)
    tk = np.clip(A.temp0.to_numpy(), -30, 60) + 273.15
    r_t = A.r_pack.to_numpy() * np.exp(2500 * (1 / tk - 1 / T_REF_K))
    a = math.exp(-DT_S / TAU_ACTIVE_S)
    heat = current**2 * r_t
    u = (1 - a) * t_eff + heat * DT_S / PACK_THERMAL_CAPACITY_J_K
    if temp_ref is None:
        temp = _segment_filter(u, a, starts, A.temp0.to_numpy()[starts])
    else:
        temp = np.interp(tau, *temp_ref)

    # --- faults active on these frames
    fv = faults[faults.vehicle_idx.isin(np.unique(vidx))]
    cells_n, probes_n = m.cells, m.probes
    vrng = np.random.default_rng([cfg.seed, 17, model_idx])
    v_all = fl.index.to_numpy()
    f32 = np.float32
    cell_cap = (1 + np.abs(vrng.normal(0, 0.01, (len(v_all), cells_n)))).astype(f32)
    cell_r = (1 + vrng.normal(0, 0.05, (len(v_all), cells_n))).astype(f32)
    probe_off = vrng.normal(0, 0.8, (len(v_all), probes_n)).astype(f32)
    probe_grad = np.abs(vrng.normal(0, 0.6, (len(v_all), probes_n))).astype(f32)
    if scen:
        srng = np.random.default_rng([cfg.seed, 17, model_idx, 4057])
        sd = fl.sc_cell_capacity_sd.to_numpy()
        cell_cap = np.where((sd > 0)[:, None], 1 + (cell_cap - 1) * (sd / 0.01)[:, None],
                            cell_cap).astype(f32)
        weak_no = fl.sc_weak_cell_no.to_numpy()
        has_weak = (weak_no > 0) & (fl.cells.to_numpy() == cells_n)
        wv = np.flatnonzero(has_weak)
        cell_cap[wv, weak_no[wv] - 1] = fl.sc_weak_cell_capacity.to_numpy()[wv]
        self_dis = np.abs(srng.normal(0, 1, (len(v_all), cells_n))).astype(f32) * f32(
            sc.self_discharge_sd)
        probe_off = probe_off + srng.uniform(-1, 1, (len(v_all), probes_n)).astype(f32) * f32(
            sc.probe_offset_max_c)
    inv_cap = (1 / cell_cap).astype(f32)
    # measurement noise: rows of a small table (σ 1.5 mV), picked at random per frame
    noise_tab = vrng.normal(0, 0.0015, (4096, max(cells_n, probes_n))).astype(f32)[:, :cells_n]
    # faults touch one cell or probe of one vehicle: kept as sparse column corrections
    # {(row mask, cell col): (soc offset, resistance mult, capacity mult)} instead of dense
    # n×cells matrices, which would cost several full passes over memory
    cell_fix: list[tuple[np.ndarray, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    probe_extra = np.zeros((n, probes_n), np.float32)
    probe_nan = np.zeros((n, probes_n), bool)
    probe_stuck = np.zeros((n, probes_n), bool)
    ins_mult = np.ones(n)
    for _, f in fv.iterrows():
        sel = np.flatnonzero(vidx == f.vehicle_idx)
        if not sel.size:
            continue
        tt = t_abs[sel]
        since = np.clip(tt - f.onset_s, 0, None)
        active = tt >= f.onset_s
        one, zero = np.ones(sel.size), np.zeros(sel.size)
        if f.fault_type == "internal_short":
            # micro-short: the cell self-discharges faster and faster (%SOC lost since onset)
            d = since / DAY_S
            off = -np.minimum(f.severity * (0.4 * d + 0.012 * d**2), 45.0)
            cell_fix.append((sel, int(f.cell_no) - 1, off, one, one, zero))
        elif f.fault_type == "cell_inconsistency":
            frac = np.clip(since / (45 * DAY_S), 0, 1)
            cell_fix.append((sel, int(f.cell_no) - 1, zero, 1 + 1.5 * frac, 1 - 0.15 * frac, zero))
        elif f.fault_type == "thermal_runaway_precursor":
            c = int(f.cell_no) - 1
            hz = f.hazard_s if np.isfinite(f.hazard_s) else f.onset_s + 60 * DAY_S
            frac = np.clip(since / max(hz - f.onset_s, 1.0), 0, 1)
            pj = min(int(c * probes_n / cells_n), probes_n - 1)
            # runaway: exponential self-heating in the last minutes before the event
            run = 120 * np.exp(np.minimum(tt - hz, 0) / 180.0) * (tt <= hz) * active
            probe_extra[sel, pj] += (6 * frac**2 + 0.025 * np.abs(current[sel]) * frac) + run
            for nb in (pj - 1, pj + 1):
                if 0 <= nb < probes_n:
                    probe_extra[sel, nb] += 0.3 * run
            collapse = 1.5 * np.clip(run / 120.0, 0, 1) ** 2  # trigger-cell voltage collapse, V
            cell_fix.append((sel, c, -2.5 * frac**2, 1 + 2 * frac, one, collapse))
            ins_mult[sel] *= np.exp(-run / 40.0)
        elif f.fault_type == "insulation_degradation":
            r0 = fl.insulation_base_kohm.iat[f.vehicle_idx]
            r_h = 100 * vnom / 1000  # kΩ at 100 Ω/V
            tau_i = (f.hazard_s - f.onset_s) / math.log(r0 / r_h)
            ins_mult[sel] *= np.exp(-since / tau_i)
        elif f.fault_type == "sensor_fault":
            p = int(f.probe_no) - 1
            if f.subtype == "stuck":
                probe_stuck[sel, p] = active
            elif f.subtype == "dropout":
                probe_nan[sel, p] = active & (np.sin(tt / 5e4 + f.severity) > -0.2)
            else:
                jump = active & (vrng.random(sel.size) < 0.05)
                probe_extra[sel, p] += np.where(jump, vrng.choice([-1, 1], sel.size)
                                                * vrng.uniform(22, 40, sel.size), 0.0)

    # --- cells: top-balanced pack, cell i's SOC = 100 − (100 − SOC)/c_i, V = OCV − I·R_i
    # OCV from a 0.01 %-step table: a gather is several times faster than np.interp, and the
    # in-place float32 ops keep this at a few passes over memory
    r_scale = ((m.cell_r_mohm / 1000) * (1 + 2 * (1 - cap / (
        fl.rated_ah.to_numpy()[vidx] * fl.bol_factor.to_numpy()[vidx])))
        * np.exp(2500 * (1 / (np.clip(temp, -30, 60) + 273.15) - 1 / T_REF_K)))
    table = OCV_TABLE[m.chemistry]
    x = inv_cap[vidx]
    x *= ((soc_true - 100.0) * 100.0)[:, None].astype(f32)
    x += f32(10000.5)
    if scen:
        # cells drift apart by their self-discharge since the last top-of-charge balancing;
        # a weak cell sits above the pack at the top (it reaches the top voltage first)
        days = np.clip((t_abs - A.t_last_full.to_numpy()) / DAY_S, 0, 60)
        off = self_dis[vidx]
        off *= (-100.0 * days)[:, None].astype(f32)
        np.maximum(off, f32(-500), out=off)
        wr = np.flatnonzero(has_weak[vidx])
        off[wr, weak_no[vidx[wr]] - 1] += (100 * fl.sc_weak_cell_top_offset_pct.to_numpy()[
            vidx[wr]]).astype(f32)
        x += off
        del off
    np.clip(x, 0, 10000, out=x)
    cells = table[x.astype(np.int32)]
    del x
    r = cell_r[vidx]
    r *= (current * r_scale)[:, None].astype(f32)
    cells -= r
    del r
    cells += noise_tab[vrng.integers(0, noise_tab.shape[0], n)]
    for sel, c, off, rm, cm, collapse in cell_fix:
        v = vidx[sel]
        s_c = 100 - (100 - soc_true[sel]) / (cell_cap[v, c] * cm) + off
        s_c = np.clip(s_c * 100 + 0.5, 0, 10000).astype(np.int32)
        cells[sel, c] = (table[s_c] - current[sel] * r_scale[sel] * cell_r[v, c] * rm
                         - collapse + vrng.normal(0, 0.0015, sel.size))
    np.clip(cells, 1.0, 4.9, out=cells)
    cells *= f32(1000)
    cells = np.rint(cells).astype(np.int32)  # mV, as the BMS reports them
    if scen and temp_ref is None and full.any():
        # the weak cell over-shoots the top voltage in the last 1-3 charging frames of a full
        # charge (the frames up to the one that reaches the end SOC), on most full charges
        first_reach = np.where(reached, kpos, 10**9)
        fr_all = np.repeat(np.minimum.reduceat(first_reach, starts), lens)
        n_ov = fl.sc_weak_cell_ov_frames.to_numpy()[vidx]
        pick = ((act_idx.astype(np.int64) * 2654435761) % 1000) / 1000.0 < sc.weak_cell_ov_share
        ov = (full & ~drive & has_weak[vidx] & pick & (kpos <= fr_all) & (kpos > fr_all - n_ov))
        r_ov = np.flatnonzero(ov)
        if r_ov.size:
            peak = fl.sc_weak_cell_peak_v.to_numpy()[vidx[r_ov]]
            cells[r_ov, weak_no[vidx[r_ov]] - 1] = np.rint(
                1000 * peak + vrng.normal(0, 3, r_ov.size)).astype(np.int32)
    pack_v = cells.sum(axis=1, dtype=np.int64) / 1000.0 - current * BUSBAR_R_OHM

    # --- probes
    probes = probe_off[vidx]
    probes += temp[:, None].astype(f32)
    probes += probe_grad[vidx] * (heat / 1000.0)[:, None].astype(f32)
    probes += probe_extra
    probes += noise_tab[vrng.integers(0, noise_tab.shape[0], n), :probes_n] * f32(200)
    probes = np.where(probe_stuck, f32(24.0), np.rint(probes))
    probes = np.where(probe_nan, np.nan, probes)

    # --- BMS outputs
    ah_since_full = A.ah_since_full0.to_numpy() + np.abs(
        _segment_cumsum(np.abs(current) * DT_S / 3600, starts))
    if scen and sc.bms_soc == "coulomb":
        soc_bms = _coulomb_soc(A, fl, sc, current, soc_true, drive, tail, starts, tau)
    else:
        drift = fl.soc_drift_per_efc.to_numpy()[vidx] * ah_since_full / (2 * cap)
        soc_bms = np.clip(np.round(soc_true + np.clip(drift, -4, 4)), 0, 100)
        soc_bms = np.where(soc_true >= 99.5, 100, soc_bms)
    if scen:
        hold = fl.sc_topup_hold_pct.to_numpy()[vidx]
        soc_bms = _topup_hold(soc_bms, soc_true, A.soc1.to_numpy(), hold, full & ~drive, tail,
                              starts, lens)
        i_meas = (fl.sc_current_gain.to_numpy()[vidx] * current
                  + fl.sc_current_offset_a.to_numpy()[vidx] + vrng.normal(0, 0.4, n))
    else:
        i_meas = current + fl.current_offset_a.to_numpy()[vidx] + vrng.normal(0, 0.4, n)
    ins = fl.insulation_base_kohm.to_numpy()[vidx] * ins_mult * (1 + vrng.normal(0, 0.03, n))

    charge_status = np.where(drive, 3, 1)
    charge_status = np.where(tail, 4, charge_status)
    charge_status = np.where(in_flicker & ~drive, 3, charge_status)
    gear = np.where(drive, 14 | np.where(p_batt > 0, 32, 0) | np.where(p_batt < 0, 16, 0), 15)
    cols = {
        "vehicle_idx": vidx, "act_idx": act_idx, "t_abs": t_abs, "kind": kind, "speed_kmh": speed,
        "odometer_km": odo, "current_a": current, "current_meas_a": i_meas, "soc_true": soc_true,
        "soc_bms": soc_bms, "pack_v": pack_v, "temp": temp, "insulation_kohm": ins,
        "charge_status": charge_status, "vehicle_status": np.where(drive, 1, 2), "gear": gear,
        "accel": np.where(drive & (p_batt > 0), np.clip(p_batt / 1500.0, 0, 100), 0.0),
        "brake": np.where(drive & (p_batt < 800), np.clip((800 - p_batt) / 400.0, 0, 100), 0.0),
    }
    if scen and "bms_belief_ah" in A:
        cols["bms_belief_ah"] = A.bms_belief_ah.to_numpy()
    return FrameBlock(cols=cols, cells=cells, probes=probes)


def _coulomb_soc(A: pd.DataFrame, fl: pd.DataFrame, sc, current: np.ndarray,
                 soc_true: np.ndarray, drive: np.ndarray, tail: np.ndarray, starts: np.ndarray,
                 tau: np.ndarray) -> np.ndarray:
    """The BMS's SOC as a coulomb count of its measured current against its capacity belief,
    from its SOC at the activity's start (true SOC + the error carried by bms_plan); 100 in the
    charge-complete frames of a full charge. Trips integrate the frames' current (10 s frames);
    charges use the analytic charged Ah, so 1 s alarm frames land on the same count."""
    vidx = A.vehicle_idx.to_numpy()
    gain = fl.sc_current_gain.to_numpy()[vidx]
    off = fl.sc_current_offset_a.to_numpy()[vidx]
    eta = fl.sc_charge_efficiency.to_numpy()[vidx]
    belief = A.bms_belief_ah.to_numpy()
    s0 = A.soc0.to_numpy()
    cap = A.cap_ah.to_numpy()
    out_ah = _segment_cumsum(np.where(drive, gain * current + off, 0.0) * DT_S / 3600, starts)
    in_ah = sc.bms_charge_efficiency * (gain * np.clip(soc_true - s0, 0, None) / 100 * cap / eta
                                        - off * tau / 3600)
    soc = s0 + A.bms_err0.to_numpy() + np.where(drive, -100 * out_ah, 100 * in_ah) / belief
    soc = np.clip(np.round(soc), 0, 100)
    return np.where(tail, 100, soc)


def _topup_hold(soc_bms: np.ndarray, soc_true: np.ndarray, soc_end: np.ndarray,
                hold_pct: np.ndarray, full_charge: np.ndarray, tail: np.ndarray,
                starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """A BMS that freezes its displayed SOC (at most 99) for the last ``hold_pct`` points of
    true SOC of a full charge while the charger tops the pack up; the charge-complete frames
    then show 100."""
    freeze = full_charge & ~tail & (hold_pct > 0) & (soc_true >= soc_end - hold_pct)
    if not freeze.any():
        return soc_bms
    n = len(soc_bms)
    first = np.minimum.reduceat(np.where(freeze, np.arange(n), n), starts)
    at = np.repeat(first, lens)
    frozen = np.minimum(soc_bms[np.clip(at, 0, n - 1)], 99)
    return np.where(freeze, frozen, soc_bms)


# BMS thresholds per chemistry: cell over/under voltage, over-charge, consistency spread
BMS_LIMITS = {"NCM": (4.25, 2.80, 4.30, 0.30), "LFP": (3.65, 2.50, 3.75, 0.25)}


def bms_alarms(block: FrameBlock, chemistry: str, nominal_v: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """General alarm flags and the highest level, as the BMS raises them from its thresholds."""
    c = block.cols
    cells = block.cells
    probes = block.probes
    n = len(cells)
    vmax, vmin = cells.max(axis=1) / 1000.0, cells.min(axis=1) / 1000.0
    tmax = np.nanmax(np.where(np.isnan(probes), -np.inf, probes), axis=1)
    tmin = np.nanmin(np.where(np.isnan(probes), np.inf, probes), axis=1)
    ov, uv, och, spread = BMS_LIMITS[chemistry]
    cells_n = cells.shape[1]
    flags = np.zeros(n, np.int64)
    level = np.zeros(n, np.int32)

    def bit(b, cond, lvl):
        nonlocal flags, level
        flags |= np.where(cond, np.int64(1) << b, 0)
        level = np.maximum(level, np.where(cond, lvl, 0))

    bit(0, (tmax - tmin) >= 20, 2)
    bit(1, tmax >= 55, 2)
    bit(1, tmax >= 65, 3)
    bit(2, c["pack_v"] >= ov * cells_n, 2)
    bit(3, c["pack_v"] <= uv * cells_n, 2)
    bit(4, c["soc_bms"] <= 10, 1)
    bit(5, vmax >= ov, 2)
    bit(6, vmin <= uv, 2)
    bit(10, (vmax - vmin) >= spread, 1)
    bit(10, (vmax - vmin) >= 2 * spread, 2)
    ins_per_v = c["insulation_kohm"] * 1000 / nominal_v
    bit(11, ins_per_v <= 500, 1)
    bit(11, ins_per_v <= 100, 2)
    bit(18, vmax >= och, 2)
    # non-battery alarms: independent background episodes, one activity at a time
    act = c["act_idx"]
    for b in (12, 13, 14, 15, 16, 17):
        hit_acts = np.unique(act)[rng.random(np.unique(act).size) < 0.004]
        on = np.isin(act, hit_acts) & (rng.random(n) < 0.5)
        bit(b, on, 1)
    return flags, level


# --------------------------------------------------------------------------------------------
# encoding to raw protocol codes
# --------------------------------------------------------------------------------------------


def encode(block: FrameBlock, fl: pd.DataFrame, cfg: SimConfig, flags: np.ndarray,
           level: np.ndarray, rng: np.random.Generator) -> dict:
    c = block.cols
    n = len(block.cells)
    vidx = c["vehicle_idx"]
    sign = np.where(fl.current_discharge_positive.to_numpy()[vidx], 1.0, -1.0)
    cells_mv = block.cells
    probes = block.probes
    probe_code = np.where(np.isnan(probes), 0xFF, np.clip(probes + 40, 0, 250)).astype(np.int32)
    pm = np.where(np.isnan(probes), -np.inf, probes)
    pmin = np.where(np.isnan(probes), np.inf, probes)
    tmax_i = pm.argmax(axis=1)
    tmin_i = pmin.argmin(axis=1)
    ar = np.arange(n)
    brake = np.round(c["brake"]).astype(np.int32)
    brake = np.where((brake > 0) & (rng.random(n) < 0.1), 101, brake)
    start = np.datetime64(cfg.start_date, "ms")
    collect = start + (np.round(c["t_abs"]).astype(np.int64) * 1000).astype("timedelta64[ms]")
    receive = collect + rng.integers(150, 2500, n).astype("timedelta64[ms]")
    # battery fault codes: OEM code 0x1000 + bit for every battery bit at level >= 2,
    # kept padded (-1) so rows can be taken and concatenated as plain numpy arrays
    batt_bits = np.array([0, 1, 2, 3, 5, 6, 10, 11, 18])
    bits = ((flags[:, None] >> batt_bits) & 1).astype(bool) & (level[:, None] >= 2)
    fault_codes = np.where(bits, 0x1000 + batt_bits[None, :], -1).astype(np.int64)
    return {
        "vin": fl.vin.to_numpy()[vidx],
        "cmd": np.full(n, 2, np.int32),
        "collect_time": collect,
        "receive_time": receive,
        "vehicle_status": c["vehicle_status"].astype(np.int32),
        "charge_status": c["charge_status"].astype(np.int32),
        "run_mode": np.ones(n, np.int32),
        "speed": np.round(c["speed_kmh"] * 10).astype(np.int32),
        "odometer": np.round(c["odometer_km"] * 10).astype(np.int64),
        "total_voltage": np.round(c["pack_v"] * 10).astype(np.int32),
        "total_current": (np.round(c["current_meas_a"] * sign * 10) + 10000).astype(np.int32),
        "soc": c["soc_bms"].astype(np.int32),
        "dcdc_status": np.ones(n, np.int32),
        "gear": c["gear"].astype(np.int32),
        "insulation_resistance": np.clip(np.round(c["insulation_kohm"]), 0, 60000).astype(np.int32),
        "accel_pedal": np.round(c["accel"]).astype(np.int32),
        "brake_pedal": brake,
        "max_volt_subsys": np.ones(n, np.int32),
        "max_volt_cell_no": (cells_mv.argmax(axis=1) + 1).astype(np.int32),
        "max_cell_voltage": cells_mv.max(axis=1),
        "min_volt_subsys": np.ones(n, np.int32),
        "min_volt_cell_no": (cells_mv.argmin(axis=1) + 1).astype(np.int32),
        "min_cell_voltage": cells_mv.min(axis=1),
        "max_temp_subsys": np.ones(n, np.int32),
        "max_temp_probe_no": (tmax_i + 1).astype(np.int32),
        "max_temp": probe_code[ar, tmax_i],
        "min_temp_subsys": np.ones(n, np.int32),
        "min_temp_probe_no": (tmin_i + 1).astype(np.int32),
        "min_temp": probe_code[ar, tmin_i],
        "max_alarm_level": level.astype(np.int32),
        "general_alarm_flags": flags.astype(np.int64),
        "battery_fault_codes": fault_codes,
        "cell_voltages": cells_mv,
        "probe_temps": probe_code,
    }


def rec_take(rec: dict, idx: np.ndarray) -> dict:
    return {k: v[idx] for k, v in rec.items()}


def rec_concat(recs: list[dict]) -> dict:
    return {k: np.concatenate([r[k] for r in recs]) for k in recs[0]}


def to_table(rec: dict) -> pa.Table:
    """Numpy record (2-D arrays for list columns) → Arrow table in the landing schema."""
    arrays = []
    for f in LANDING_SCHEMA:
        v = rec[f.name]
        if f.name == "battery_fault_codes":
            keep = v >= 0
            off = np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32)
            arrays.append(pa.ListArray.from_arrays(pa.array(off), pa.array(v[keep], pa.int64())))
        elif f.name in ("cell_voltages", "probe_temps"):
            mat = np.ascontiguousarray(v, dtype=np.int32)
            off = np.arange(0, mat.size + 1, mat.shape[1], dtype=np.int32)
            arrays.append(pa.ListArray.from_arrays(pa.array(off), pa.array(mat.ravel())))
        else:
            arrays.append(pa.array(v, type=f.type))
    return pa.Table.from_arrays(arrays, schema=LANDING_SCHEMA)


# --------------------------------------------------------------------------------------------
# stage 3: dirty data
# --------------------------------------------------------------------------------------------


def inject_dirty(rec: dict, rows_ok: np.ndarray, fl: pd.DataFrame, cfg: SimConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, dict, pd.DataFrame]:
    """Inject defects, in place, into rows ``rows_ok`` of a numpy frame record.

    Returns (row indices to write once more as exact duplicates, late re-send record, truth
    rows with the landed vin/collect_time/cmd of every defective row)."""
    n = len(rows_ok)
    empty = pd.DataFrame(columns=["vin", "collect_time", "cmd", "defect", "field_name", "detail"])
    if cfg.dirty_scale <= 0 or n == 0:
        return np.array([], int), rec_take(rec, np.array([], int)), empty
    counts = {k: rng.binomial(n, min(1.0, r * cfg.dirty_scale)) for k, r in DIRTY_RATES.items()}
    perm = rng.permutation(rows_ok)
    pick, pos = {}, 0
    for k, c in counts.items():
        pick[k] = np.sort(perm[pos:pos + c])
        pos += c
    parts: list[pd.DataFrame] = []

    def note(rows, defect, field_name, detail, cmd=2):
        parts.append(pd.DataFrame({"row": rows, "defect": defect, "field_name": field_name,
                                   "detail": detail, "cmd": cmd}))

    # markers in scalar fields and in one element of the cell-voltage array
    for defect, table in (("abnormal_marker", ABNORMAL), ("invalid_marker", INVALID)):
        rows = pick[defect]
        fields = rng.choice(list(MARKER_FIELDS) + ["cell_voltages"], rows.size)
        for fname in np.unique(fields):
            r = rows[fields == fname]
            if fname == "cell_voltages":
                code = table[2]
                rec["cell_voltages"][r, rng.integers(0, rec["cell_voltages"].shape[1], r.size)] = code
            else:
                code = table[MARKER_FIELDS[fname]]
                rec[fname][r] = code
            note(r, defect, fname, f"code {code:#x}")
    # out-of-range spikes
    rows = pick["out_of_range"]
    which = rng.integers(0, len(SPIKES), rows.size)
    for i, (fname, lo, hi) in enumerate(SPIKES):
        r = rows[which == i]
        vals = rng.integers(lo, hi + 1, r.size)
        rec[fname][r] = vals
        note(r, "out_of_range", fname, vals.astype(str))
    # odometer glitches: a jump by 500 km .. 50,000 km, or a reset to 0
    rows = pick["odometer_glitch"]
    jump = rng.random(rows.size) < 0.6
    rec["odometer"][rows] = np.where(jump, rec["odometer"][rows]
                                     + rng.integers(5000, 500000, rows.size), 0)
    note(rows, "odometer_glitch", "odometer", np.where(jump, "jump", "reset"))
    # status conflicts: 'vehicle off' while moving, 'charging' while discharging
    rows = pick["status_conflict"]
    sign = np.where(fl.set_index("vin").current_discharge_positive.reindex(
        rec["vin"][rows]).to_numpy(), 1, -1)
    moving = rec["speed"][rows] > 100
    discharging = (rec["total_current"][rows] - 10000) * sign > 100
    r1, r2 = rows[moving], rows[~moving & discharging]
    rec["vehicle_status"][r1] = 2
    rec["charge_status"][r2] = 1
    note(r1, "status_conflict", "vehicle_status", "off while moving")
    note(r2, "status_conflict", "charge_status", "charging while discharging")
    # pack voltage disagreeing with the sum of its cells by 10-25 %
    rows = pick["pack_voltage_mismatch"]
    f = rng.uniform(0.10, 0.25, rows.size) * rng.choice([-1, 1], rows.size)
    rec["total_voltage"][rows] = np.round(rec["total_voltage"][rows] * (1 + f)).astype(np.int32)
    note(rows, "pack_voltage_mismatch", "total_voltage", np.round(f, 3).astype(str))
    # clock errors: T-BOX clock ahead by 1 h .. 30 days, or an RTC reset to 2000-01-01
    rows = pick["clock_error"]
    reset = rng.random(rows.size) < 0.4
    ct = rec["collect_time"][rows]
    ahead = rng.integers(3600, 30 * DAY_S, rows.size).astype("timedelta64[s]")
    tod = ct - ct.astype("datetime64[D]")
    rec["collect_time"][rows] = np.where(
        reset, np.datetime64("2000-01-01T00:00:00", "ms") + tod, ct + ahead)
    note(rows, "clock_error", "collect_time", np.where(reset, "rtc_reset", "ahead"))

    truth = pd.concat(parts, ignore_index=True)
    truth["vin"] = rec["vin"][truth.row.to_numpy()]
    truth["collect_time"] = rec["collect_time"][truth.row.to_numpy()]

    # exact duplicates (same file) and late re-sends (cmd 3, received up to 3 days later)
    dup = pick["duplicate"]
    late = rec_take(rec, pick["late_resend"])
    late["cmd"] = np.full(len(late["cmd"]), 3, np.int32)
    late["receive_time"] = late["receive_time"] + rng.integers(
        60, 3 * DAY_S, len(late["cmd"])).astype("timedelta64[s]")
    extra = pd.DataFrame({"vin": rec["vin"][dup], "collect_time": rec["collect_time"][dup],
                          "cmd": rec["cmd"][dup], "defect": "duplicate", "field_name": None,
                          "detail": "exact copy"})
    extra_late = pd.DataFrame({"vin": late["vin"], "collect_time": late["collect_time"],
                               "cmd": 3, "defect": "late_resend", "field_name": None,
                               "detail": "cmd 3 copy of a delivered frame"})
    truth = pd.concat([truth.drop(columns="row"), extra, extra_late], ignore_index=True)
    return dup, late, truth


def link_outages(rec: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Cut 1-10 min link outages; the frames inside arrive later as cmd 3 (legitimate data).

    Returns (rows delivered in real time, record of the re-sent rows)."""
    n = len(rec["vin"])
    starts = np.flatnonzero(rng.random(n) < 2e-4)
    mask = np.zeros(n, bool)
    vin, cmd = rec["vin"], rec["cmd"]
    for s in starts:  # a handful per block; each outage is a contiguous run of one vehicle
        e = min(n, s + int(rng.integers(6, 60)))
        mask[s:e] = (vin[s:e] == vin[s]) & (cmd[s:e] == 2)
    out = rec_take(rec, np.flatnonzero(mask))
    out["cmd"] = np.full(len(out["cmd"]), 3, np.int32)
    out["receive_time"] = out["collect_time"] + rng.integers(
        600, 900, len(out["cmd"])).astype("timedelta64[s]")
    return np.flatnonzero(~mask), out


def write_day_files(tables: list[pa.Table], root: Path, prefix: str,
                    pool: ThreadPoolExecutor) -> list:
    """Write the rows of ``tables`` (each sorted by collect_time) as one file per collect date,
    in the background; returns futures of (relative file path, rows)."""
    by_day: dict[str, list[pa.Table]] = {}
    for t in tables:
        if t.num_rows == 0:
            continue
        day = t.column("collect_time").to_numpy().astype("datetime64[D]")
        days, first = np.unique(day, return_index=True)
        bounds = np.append(first, len(day))
        for i, d in enumerate(days):
            by_day.setdefault(str(d), []).append(t.slice(bounds[i], bounds[i + 1] - bounds[i]))
    def write(d: str, parts: list[pa.Table]) -> tuple[str, int]:
        part = root / f"dt={d}"
        part.mkdir(parents=True, exist_ok=True)
        tbl = pa.concat_tables(parts)
        # landing.REALTIME_WRITE_OPTIONS: lz4, 128 k-row groups (more row groups = both cores
        # busy when DuckDB reads), dictionaries only where values repeat
        pq.write_table(tbl, part / f"{prefix}.parquet", **REALTIME_WRITE_OPTIONS)
        return f"{root.name}/dt={d}/{prefix}.parquet", tbl.num_rows

    # pyarrow releases the GIL while encoding: the writes overlap the next chunk's compute
    return [pool.submit(write, d, parts) for d, parts in sorted(by_day.items())]


def _sorted_table(rec: dict, rows: np.ndarray | None = None) -> pa.Table:
    rows = np.arange(len(rec["vin"])) if rows is None else rows
    order = rows[np.argsort(rec["collect_time"][rows], kind="stable")]
    return to_table(rec_take(rec, order))


def _file_of(collect_time: pd.Series, prefix: str) -> pd.Series:
    d = pd.to_datetime(collect_time).dt.strftime("%Y-%m-%d")
    return "gbt32960_realtime/dt=" + d + f"/{prefix}.parquet"


# --------------------------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------------------------


def simulate(cfg: SimConfig, out: Path | str, truth: Path | str) -> SimResult:
    t0 = time.perf_counter()
    out, truth = Path(out), Path(truth)
    rng = np.random.default_rng(cfg.seed)
    fl = make_fleet(cfg, rng)
    faults = scale_faults(assign_faults(fl, cfg, rng), get_scenario(cfg.scenario), cfg.seed)
    acts, daily = plan_activities(fl, faults, cfg, rng)
    acts = place_thermal_events(acts, faults, cfg)
    # the scenario: per-vehicle BMS and pack draws (own random streams), and the BMS's state
    # carried across activities; nothing of this runs for the baseline
    scen = get_scenario(cfg.scenario)
    vp = vehicle_params(fl, scen, cfg.seed)
    if not scen.is_baseline:
        acts = bms_plan(acts, fl, vp, scen, cfg.seed, DT_S, DAY_S)
        fl = fl.join(vp.drop(columns=["vin", "chemistry"]).add_prefix("sc_"))

    rt_dir = out / "gbt32960_realtime"
    (out / "vehicle_master").mkdir(parents=True, exist_ok=True)
    rt_dir.mkdir(parents=True, exist_ok=True)
    truth.mkdir(parents=True, exist_ok=True)

    # chunks of activities by start day and vehicle group, sized so a chunk's frames fit
    # comfortably in memory (a large fleet's single day is split by vehicle)
    frames_per_day = max(1.0, acts.n_frames.sum() / cfg.days)
    chunk_days = max(1, int(cfg.max_frames_per_chunk // frames_per_day))
    n_groups = max(1, math.ceil(frames_per_day * chunk_days / cfg.max_frames_per_chunk))
    act_day = (acts.t_start.to_numpy() // DAY_S).astype(int)
    act_group = acts.vehicle_idx.to_numpy() * n_groups // len(fl)
    act_model = fl.model_idx.to_numpy()[acts.vehicle_idx.to_numpy()]
    alarm_acts = _level3_activities(acts, faults)
    sessions, dirty_truth, late_tables, pending = [], [], [], []
    pool = ThreadPoolExecutor(max_workers=2)
    chunks = [(d0, g) for d0 in range(0, cfg.days, chunk_days) for g in range(n_groups)]
    for ci, (d0, grp) in enumerate(chunks):
        crng = np.random.default_rng([cfg.seed, 101, ci])
        in_chunk = (act_day >= d0) & (act_day < d0 + chunk_days) & (act_group == grp)
        tables = []
        prefix = f"part-{ci:04d}"
        for mi in range(len(VEHICLE_MODELS)):
            am = np.flatnonzero(in_chunk & (act_model == mi))
            if am.size == 0:
                continue
            nfr = acts.n_frames.to_numpy()[am]
            act_idx = np.repeat(am, nfr)
            tau = (np.arange(nfr.sum()) - np.repeat(np.cumsum(nfr) - nfr, nfr)) * float(DT_S)
            block = make_frames(acts, act_idx, tau, fl, faults, cfg, crng, mi)
            rec, sess = _finish_block(block, acts, fl, cfg, crng, mi)
            sessions.append(sess)
            # 1 s frames around a level-3 alarm (30 s before as cmd 3, 30 s after as cmd 2)
            extra = [_alarm_frames(acts, a, block, fl, faults, cfg, crng, mi)
                     for a in sorted(set(am.tolist()) & alarm_acts)]
            extra = [e for e in extra if e is not None]
            if extra:
                rec = rec_concat([rec, *extra])
            keep, outage = link_outages(rec, crng)
            dup, late, tr = inject_dirty(rec, keep, fl, cfg, crng)
            tr["source_file"] = np.where(tr.defect == "late_resend",
                                         _file_of(tr.collect_time, "resend"),
                                         _file_of(tr.collect_time, prefix))
            dirty_truth.append(tr)
            late_tables.append(_sorted_table(rec_concat([outage, late])))
            tables.append(_sorted_table(rec, np.concatenate([keep, dup])))
        pending += write_day_files(tables, rt_dir, prefix, pool)
        # back-pressure: never hold more than a few chunks' tables waiting for the writers
        while sum(not f.done() for f in pending) > 8:
            next(f for f in pending if not f.done()).result()
    # late files land after everything else: out-of-order arrival into old partitions
    pending += write_day_files(late_tables, rt_dir, "resend", pool)
    files = dict(f.result() for f in pending)
    pool.shutdown()
    n_frames = sum(files.values())

    # vehicle master
    vm = pd.DataFrame(
        {
            "vin": fl.vin,
            "vehicle_model": fl.vehicle_model,
            "chemistry": fl.chemistry,
            "rated_capacity_ah": fl.rated_ah.astype(float),
            "rated_energy_kwh": [VEHICLE_MODELS[i].rated_kwh for i in fl.model_idx],
            "cells_in_series": fl.cells.astype("int32"),
            "temp_probes": fl.probes.astype("int32"),
            "current_discharge_positive": fl.current_discharge_positive.astype(bool),
            "in_service_date": fl.in_service_date,
            "usage_type": fl.usage_type,
            "region": fl.region,
        }
    )
    pq.write_table(pa.Table.from_pandas(vm, schema=VEHICLE_MASTER_SCHEMA, preserve_index=False),
                   out / "vehicle_master" / "vehicle_master.parquet")

    # ground truth
    start = pd.Timestamp(cfg.start_date)
    daily["vin"] = fl.vin.to_numpy()[daily.vehicle_idx]
    daily["date"] = (start + pd.to_timedelta(daily.day, unit="D")).dt.date
    daily["rated_capacity_ah"] = fl.rated_ah.to_numpy()[daily.vehicle_idx]
    daily["true_soh_pct"] = daily.true_capacity_ah / daily.rated_capacity_ah * 100
    # a vehicle lost in a thermal event has no days after it
    hz = faults[(faults.fault_type == "thermal_runaway_precursor") & faults.hazard_s.notna()]
    gone = np.full(len(fl), np.inf)
    gone[hz.vehicle_idx.to_numpy()] = hz.hazard_s.to_numpy() // DAY_S
    daily = daily[daily.day.to_numpy() <= gone[daily.vehicle_idx.to_numpy()]]
    if "bms_belief_ah" in acts:
        # the BMS's capacity belief at the end of each day (its last activity started by then)
        a = acts[["vehicle_idx", "t_start", "bms_belief_ah"]].sort_values("t_start")
        q = daily[["vehicle_idx", "day"]].assign(t=(daily.day.to_numpy() + 1.0) * DAY_S - 1)
        q = pd.merge_asof(q.reset_index().sort_values("t"), a, left_on="t", right_on="t_start",
                          by="vehicle_idx", direction="backward").set_index("index")
        daily["bms_capacity_belief_ah"] = q.bms_belief_ah.reindex(daily.index).to_numpy()
        cols_daily = ["vin", "date", "true_capacity_ah", "true_soh_pct", "rated_capacity_ah",
                      "bms_capacity_belief_ah"]
    else:
        cols_daily = ["vin", "date", "true_capacity_ah", "true_soh_pct", "rated_capacity_ah"]
    daily[cols_daily].to_parquet(truth / "vehicle_daily.parquet", index=False)
    write_truth(truth, scen, vp)

    sess = pd.concat(sessions, ignore_index=True)
    sess = sess.sort_values(["vin", "start_time"]).reset_index(drop=True)
    sess.to_parquet(truth / "charge_sessions.parquet", index=False)

    ft = pd.DataFrame(
        {
            "vin": fl.vin.to_numpy()[faults.vehicle_idx],
            "fault_type": faults.fault_type,
            "onset_time": start + pd.to_timedelta(faults.onset_s.round(), unit="s"),
            "hazard_time": start + pd.to_timedelta(faults.hazard_s.round(), unit="s"),
            "cell_no": faults.cell_no.astype("Int32"),
            "probe_no": faults.probe_no.astype("Int32"),
            "detail": np.where(faults.fault_type == "sensor_fault", faults.subtype, None),
            **({} if scen.is_baseline else {"severity": faults.severity.to_numpy()}),
        }
    )
    horizon_end = start + pd.Timedelta(days=cfg.days)
    ft.loc[ft.hazard_time > horizon_end, "hazard_time"] = pd.NaT
    ft.to_parquet(truth / "fault_events.parquet", index=False)

    dt = pd.concat(dirty_truth, ignore_index=True)
    flip = fl[~fl.current_discharge_positive]
    if len(flip):
        # a vehicle-level defect: every frame of these vehicles carries the reversed sign
        dt = pd.concat([dt, pd.DataFrame({"vin": flip.vin, "collect_time": pd.NaT, "cmd": None,
                                          "defect": "sign_flip", "field_name": "total_current",
                                          "detail": "vehicle reports charge current positive",
                                          "source_file": None})], ignore_index=True)
    dt["collect_time"] = pd.to_datetime(dt.collect_time).astype("datetime64[ms]")
    dt["cmd"] = dt.cmd.astype("Int32")
    dt.to_parquet(truth / "dirty_records.parquet", index=False)

    secs = time.perf_counter() - t0
    return SimResult(
        vehicles=len(fl), frames=n_frames, files=len(files), seconds=secs,
        dirty_records=len(dt), charge_sessions=len(sess), faults=len(ft),
        counts=dt.defect.value_counts().to_dict(),
    )


def _finish_block(block: FrameBlock, acts, fl, cfg, rng, mi):
    m = VEHICLE_MODELS[mi]
    flags, level = bms_alarms(block, m.chemistry, m.nominal_v, rng)
    rec = encode(block, fl, cfg, flags, level, rng)
    sess = _charge_truth(block, rec, acts, fl)
    return rec, sess


def _charge_truth(block: FrameBlock, rec: dict, acts, fl) -> pd.DataFrame:
    """True charging sessions: maximal runs of charging frames of one charge activity."""
    c = block.cols
    # the "charge complete" tail is excluded; status-flicker frames stay inside the session
    charging = (c["kind"] > 0) & (c["charge_status"] != 4)
    if not charging.any():
        return pd.DataFrame(columns=["vin", "start_time", "end_time", "start_soc", "end_soc",
                                     "charged_ah", "charger_type"])
    idx = np.flatnonzero(charging)
    a = c["act_idx"][idx]
    t = c["t_abs"][idx]
    i_true = -c["current_a"][idx]
    first = np.r_[True, a[1:] != a[:-1]]
    starts = np.flatnonzero(first)
    # trapezoidal ∫|I|dt of the true current inside the session
    dt_s = np.r_[0.0, np.diff(t)]
    trap = np.where(first, 0.0, 0.5 * (i_true + np.r_[0.0, i_true[:-1]]) * dt_s) / 3600
    ah = np.add.reduceat(trap, starts)
    ends = np.r_[starts[1:] - 1, len(idx) - 1]
    kind = c["kind"][idx][starts]
    return pd.DataFrame(
        {
            "vin": rec["vin"][idx][starts],
            "start_time": rec["collect_time"][idx][starts],
            "end_time": rec["collect_time"][idx][ends],
            "start_soc": rec["soc"][idx][starts].astype(int),
            "end_soc": rec["soc"][idx][ends].astype(int),
            "true_start_soc_pct": c["soc_true"][idx][starts],
            "true_end_soc_pct": c["soc_true"][idx][ends],
            "charged_ah": ah,
            "charger_type": np.where(kind == 2, "DC", "AC"),
            "frames": np.diff(np.r_[starts, len(idx)]),
            **({"bms_belief_ah": c["bms_belief_ah"][idx][starts]} if "bms_belief_ah" in c
               else {}),
        }
    )


def _level3_activities(acts: pd.DataFrame, faults: pd.DataFrame) -> set[int]:
    """The last activity of every vehicle whose thermal-runaway precursor reaches its event."""
    out = set()
    hz = faults[(faults.fault_type == "thermal_runaway_precursor") & faults.hazard_s.notna()]
    for v in hz.vehicle_idx:
        a = np.flatnonzero(acts.vehicle_idx.to_numpy() == v)
        if a.size:
            out.add(int(a[-1]))
    return out


def _alarm_frames(acts, a, block, fl, faults, cfg, rng, mi) -> dict | None:
    """1 s frames for 30 s before and after the first level-3 frame of activity ``a``."""
    c = block.cols
    sel = c["act_idx"] == a
    if not sel.any():
        return None
    m = VEHICLE_MODELS[mi]
    _flags, level = bms_alarms(FrameBlock({k: v[sel] for k, v in c.items()}, block.cells[sel],
                                         block.probes[sel]), m.chemistry, m.nominal_v, rng)
    hit = np.flatnonzero(level >= 3)
    if hit.size == 0:
        return None
    t3 = c["t_abs"][sel][hit[0]]
    t_start = acts.t_start.iat[a]
    offs = np.arange(t3 - 30, t3 + 31) - t_start
    last = (acts.n_frames.iat[a] - 1) * DT_S
    offs = offs[(offs >= 0) & (offs <= last) & (np.round(offs) % DT_S != 0)]
    if offs.size == 0:
        return None
    blk = make_frames(acts, np.full(offs.size, a), offs.astype(float), fl, faults, cfg, rng, mi,
                      temp_ref=(c["t_abs"][sel] - t_start, c["temp"][sel]))
    rec = encode(blk, fl, cfg, *bms_alarms(blk, m.chemistry, m.nominal_v, rng), rng)
    pre = blk.cols["t_abs"] < t3
    rec["cmd"] = np.where(pre, 3, 2).astype(np.int32)
    # pre-alarm frames come from the T-BOX buffer: received after the post-alarm window
    start = np.datetime64(cfg.start_date, "ms")
    t_recv = start + (np.int64(round(t3 + 31)) * 1000).astype("timedelta64[ms]")
    rec["receive_time"] = np.where(pre, t_recv + rng.integers(0, 5000, offs.size).astype(
        "timedelta64[ms]"), rec["receive_time"])
    return rec


def summarize_sessions(truth: Path | str) -> dict:
    s = pd.read_parquet(Path(truth) / "charge_sessions.parquet")
    return {
        "sessions": len(s),
        "start_soc_median": float(s.start_soc.median()),
        "start_soc_iqr": (float(s.start_soc.quantile(0.25)), float(s.start_soc.quantile(0.75))),
        "end_soc_median": float(s.end_soc.median()),
        "end_soc_iqr": (float(s.end_soc.quantile(0.25)), float(s.end_soc.quantile(0.75))),
        "dc_share": float((s.charger_type == "DC").mean()),
    }


def main_simulate(vehicles: int, days: int, seed: int, out: str, truth: str,
                  start_date: str | None = None, fault_share: float = 0.03,
                  dirty_scale: float = 1.0, scenario: str = "baseline") -> SimResult:
    cfg = SimConfig(vehicles=vehicles, days=days, seed=seed, fault_share=fault_share,
                    dirty_scale=dirty_scale, scenario=get_scenario(scenario).name)
    if start_date:
        cfg.start_date = datetime.strptime(start_date, "%Y-%m-%d").date()
    return simulate(cfg, out, truth)
