"""Simulator scenarios: BMS and pack behaviours the warehouse's models were not built on.

A model checked only against the simulator it was designed with passes by construction (issue
14: the same SOH and warning code missed every target on an independent fleet). A scenario
changes *how the simulated BMS and pack behave*, never the vehicles' use or ageing, so that a
scenario fleet of the same seed drives the same trips as the baseline and its true SOH is the
baseline's; only what the telemetry says about it differs.

BMS variants
  * ``bms_soc = "coulomb"``: the reported SOC is a coulomb count of the BMS's *measured*
    current (sensor gain and offset included) against the BMS's own capacity belief, anchored
    at 100 % when a full charge completes and, optionally, re-anchored from the OCV when the
    vehicle wakes after a rest (with an error, a relaxation bias, and never on the LFP plateau).
    The belief follows only part of the true fade and is updated now and then (lagging).
    ``"legacy"`` keeps today's model (SOC = true SOC + a drift growing with the throughput since
    the last full charge).
  * top-up hold: while the charger tops the pack up, the displayed SOC is frozen (at most 99)
    and jumps to 100 when the charge completes; the Ah keep running to the end.
  * current sensor gain and offset; the pack's coulombic charge efficiency and the one the BMS
    assumes; a standby (auxiliary) load drawn from the pack in charge-complete frames (the
    current the warehouse's offset calibration sees there is not sensor error).

Pack variants
  * cell capacity spread (per vehicle, 0.5-3 % SD instead of 1 %), cell self-discharge spread
    (cells drift apart between the top-of-charge balancing of full charges), a weak cell (lower
    capacity, not top-balanced: lowest at low SOC, reaches the top voltage first and over-shoots
    briefly at the end of a full charge), temperature-probe offsets up to 2 °C.

Every parameter has a neutral value; ``baseline`` is all neutral and reproduces the simulator's
output bit for bit (the scenario code draws from random streams of its own and is skipped when
neutral). Per-vehicle draws are written to ``truth/vehicle_scenario.parquet`` and the scenario's
parameters to ``truth/scenario.json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Scenario:
    name: str = "baseline"
    description: str = "the simulator as it was: the assumptions the current models were built on"
    # --- BMS SOC
    bms_soc: str = "legacy"  # "legacy" | "coulomb"
    belief_tracking: tuple = (1.0, 1.0)  # share of the true fade the capacity belief follows
    belief_update_days: tuple = (0.0, 0.0)  # belief refreshed every U(a, b) days (0: always)
    belief_error_sd: float = 0.0  # relative error of each belief update
    initial_soc_error_sd: float = 0.0  # % SOC, the BMS's error when the simulation starts
    ocv_reset_rest_h: tuple = (np.inf, np.inf)  # OCV re-anchoring after a rest of U(a, b) hours
    ocv_reset_sd: float = 0.0  # % SOC, random error of an OCV reset
    ocv_relax_bias: tuple = (0.0, 0.0)  # % SOC, U(a, b): an OCV read too early after a discharge
    # reads low (after a charge: high) by this
    lfp_plateau: tuple = (30.0, 90.0)  # no OCV reset on LFP between these true SOCs
    topup_hold_share: float = 0.0  # vehicles whose BMS freezes the display during the top-up
    topup_hold_pct: tuple = (1.5, 3.0)  # the last U(a, b) % of true SOC of a full charge
    # --- current sensor, efficiency, standby load
    current_gain_sd: float = 0.0  # relative gain error of the current sensor
    current_offset_max_a: float = 0.0  # > 0: offsets U(-x, x) A instead of N(0, 0.25)
    charge_efficiency: tuple = (1.0, 1.0)  # true coulombic efficiency of a charge, U(a, b)
    bms_charge_efficiency: float = 1.0  # the efficiency the BMS's counter assumes
    standby_load_a: tuple = (0.0, 0.0)  # U(a, b) A drawn in charge-complete frames
    # --- pack
    cell_capacity_sd: tuple = (0.0, 0.0)  # > 0: cell capacity SD U(a, b) (fraction), not 1 %
    self_discharge_sd: float = 0.0  # % SOC per day, SD of the cells' self-discharge spread
    weak_cell_share: float = 0.0  # vehicles with a weak cell
    weak_cell_capacity: tuple = (0.965, 0.985)  # its relative capacity
    weak_cell_top_offset: tuple = (0.3, 0.8)  # % SOC it sits above the pack (not top-balanced)
    weak_cell_ov_frames: tuple = (1, 3)  # 10 s frames above the limit at the end of a full charge
    weak_cell_ov_share: float = 0.6  # full charges that end with the over-shoot
    weak_cell_peak_v: dict | None = None  # chemistry -> (low, high) peak voltage
    probe_offset_max_c: float = 0.0  # extra probe offsets U(-x, x) °C
    # --- faults
    isc_severity: tuple = (1.0, 1.0)  # internal shorts' severity multiplied by U(a, b) (milder
    # micro-shorts hide in a pack whose healthy cells already drift apart)

    @property
    def is_baseline(self) -> bool:
        return replace(self, name="baseline", description=BASELINE.description) == BASELINE

    def to_json(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


BASELINE = Scenario()
WEAK_PEAK_V = {"NCM": (4.35, 4.40), "LFP": (3.75, 3.79)}

_LAGGING = {"bms_soc": "coulomb", "belief_tracking": (0.3, 0.8),
            "belief_update_days": (20.0, 120.0), "belief_error_sd": 0.01,
            "initial_soc_error_sd": 1.0}
_OCV = {"bms_soc": "coulomb", "ocv_reset_rest_h": (1.0, 4.0), "ocv_reset_sd": 1.5,
        "ocv_relax_bias": (0.5, 2.0), "initial_soc_error_sd": 1.0}
_TOPUP = {"topup_hold_share": 0.7, "topup_hold_pct": (2.0, 3.5)}
_SENSOR = {"current_gain_sd": 0.01, "current_offset_max_a": 0.3,
           "charge_efficiency": (0.985, 0.998), "bms_charge_efficiency": 1.0,
           "standby_load_a": (0.9, 1.5)}
_PACK = {"cell_capacity_sd": (0.005, 0.03), "self_discharge_sd": 0.03, "weak_cell_share": 0.6,
         "weak_cell_peak_v": WEAK_PEAK_V, "probe_offset_max_c": 2.0}
_FAULTS = {"isc_severity": (0.3, 0.7)}

SCENARIOS = {
    "baseline": BASELINE,
    "bms_lagging": Scenario(
        name="bms_lagging", description="coulomb-counted SOC against a capacity belief that "
        "follows 30-80 % of the true fade, refreshed every 20-120 days", **_LAGGING),
    "bms_ocv_reset": Scenario(
        name="bms_ocv_reset", description="coulomb-counted SOC re-anchored from the OCV after "
        "1-4 h of rest (error 1.5 % SD, relaxation bias 0.5-2 %), never on the LFP plateau",
        **_OCV),
    "topup_hold": Scenario(
        name="topup_hold", description="70 % of BMSs freeze the displayed SOC (<= 99) for the "
        "last 2-3.5 % of a full charge, then jump to 100 at completion", **_TOPUP),
    "sensor_bias": Scenario(
        name="sensor_bias", description="current-sensor gain (1 % SD) and offset (+-0.3 A), "
        "charge efficiency 98.5-99.8 %, standby load 0.9-1.5 A in charge-complete frames",
        **_SENSOR),
    "weak_cell": Scenario(
        name="weak_cell", description="cell capacity spread 0.5-3 %, self-discharge spread, a "
        "weak cell over-shooting the top voltage for 10-30 s at the end of full charges on 60 % "
        "of vehicles, probe offsets up to 2 degC", **_PACK),
    "hostile": Scenario(
        name="hostile", description="all of the above together (lagging belief, OCV resets, "
        "top-up hold, sensor bias, standby load, pack spread and weak cells) and milder "
        "internal shorts (severity x 0.3-0.7)",
        **{**_LAGGING, **_OCV, **_TOPUP, **_SENSOR, **_PACK, **_FAULTS}),
}


def get_scenario(name: str | Scenario | None) -> Scenario:
    if isinstance(name, Scenario):
        return name
    key = (name or "baseline").strip().lower()
    if key == "mixed":
        key = "hostile"
    if key not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return SCENARIOS[key]


# --------------------------------------------------------------------------------------------
# per-vehicle draws
# --------------------------------------------------------------------------------------------


def vehicle_params(fl: pd.DataFrame, sc: Scenario, seed: int) -> pd.DataFrame:
    """One row per vehicle (fleet order) with its draws for the scenario; neutral for baseline.
    Drawn from a random stream of its own, so the fleet, plan and frames streams are untouched."""
    n = len(fl)
    rng = np.random.default_rng([seed, 4049])

    def u(lo_hi, size=n):
        lo, hi = lo_hi
        return rng.uniform(lo, hi, size) if hi > lo else np.full(size, float(lo))

    lfp = (fl.chemistry.to_numpy() == "LFP")
    p = pd.DataFrame({"vin": fl.vin.to_numpy()})
    p["belief_tracking"] = u(sc.belief_tracking)
    p["belief_update_days"] = u(sc.belief_update_days)
    p["belief_phase"] = rng.random(n)
    p["initial_soc_error_pct"] = rng.normal(0, 1, n) * sc.initial_soc_error_sd
    p["ocv_reset_rest_h"] = u(sc.ocv_reset_rest_h) if np.isfinite(sc.ocv_reset_rest_h[0]) \
        else np.full(n, np.inf)
    p["ocv_relax_bias_pct"] = u(sc.ocv_relax_bias)
    p["topup_hold"] = rng.random(n) < sc.topup_hold_share
    p["topup_hold_pct"] = np.where(p.topup_hold, u(sc.topup_hold_pct), 0.0)
    p["current_gain"] = 1.0 + rng.normal(0, 1, n) * sc.current_gain_sd
    p["current_offset_a"] = (rng.uniform(-sc.current_offset_max_a, sc.current_offset_max_a, n)
                             if sc.current_offset_max_a > 0 else fl.current_offset_a.to_numpy())
    p["charge_efficiency"] = u(sc.charge_efficiency)
    p["standby_load_a"] = u(sc.standby_load_a)
    p["cell_capacity_sd"] = u(sc.cell_capacity_sd)
    cells = fl.cells.to_numpy()
    weak = rng.random(n) < sc.weak_cell_share
    p["weak_cell_no"] = np.where(weak, (rng.random(n) * cells).astype(int) + 1, 0)
    p["weak_cell_capacity"] = np.where(weak, u(sc.weak_cell_capacity), 1.0)
    p["weak_cell_top_offset_pct"] = np.where(weak, u(sc.weak_cell_top_offset), 0.0)
    lo, hi = sc.weak_cell_ov_frames
    p["weak_cell_ov_frames"] = np.where(weak, rng.integers(lo, hi + 1, n), 0)
    peak = sc.weak_cell_peak_v or WEAK_PEAK_V
    p["weak_cell_peak_v"] = np.where(weak, np.where(lfp, u(peak["LFP"]), u(peak["NCM"])), np.nan)
    p["chemistry"] = fl.chemistry.to_numpy()
    return p


def scale_faults(faults: pd.DataFrame, sc: Scenario, seed: int) -> pd.DataFrame:
    """Milder (or harsher) internal shorts, from a random stream of their own."""
    lo, hi = sc.isc_severity
    if lo == hi == 1.0 or not len(faults):
        return faults
    f = faults.copy()
    isc = (f.fault_type == "internal_short").to_numpy()
    mult = np.random.default_rng([seed, 4053]).uniform(lo, hi, len(f))
    f["severity"] = np.where(isc, f.severity * mult, f.severity)
    return f


def write_truth(truth: Path, sc: Scenario, params: pd.DataFrame) -> None:
    truth = Path(truth)
    (truth / "scenario.json").write_text(json.dumps(sc.to_json(), indent=2, default=float) + "\n")
    if not sc.is_baseline:
        params.to_parquet(truth / "vehicle_scenario.parquet", index=False)


# --------------------------------------------------------------------------------------------
# BMS state across activities (plan level, vectorised)
# --------------------------------------------------------------------------------------------


def _last_true_index(flag: np.ndarray) -> np.ndarray:
    """For each row, the index of the last row at or before it where flag is true (flag[0] must
    be true)."""
    idx = np.where(flag, np.arange(len(flag)), 0)
    return np.maximum.accumulate(idx)


def bms_plan(acts: pd.DataFrame, fl: pd.DataFrame, vp: pd.DataFrame, sc: Scenario,
             seed: int, dt_s: float, day_s: float) -> pd.DataFrame:
    """Per activity: the BMS's capacity belief (``bms_belief_ah``), its SOC error at the
    activity's start (``bms_err0``: BMS SOC − true SOC, % points) and the end of the vehicle's
    last full charge (``t_last_full``, for the cells' self-discharge since balancing).

    The error is carried from activity to activity by a segmented cumulative sum of each
    activity's counting error; it restarts at a full charge (the BMS declares 100 %), at an OCV
    reset, and where the count ran into 0 or 100 % (the BMS clamps). Activities are sorted by
    (vehicle, start)."""
    a = acts.copy()
    n = len(a)
    if n == 0:
        return a.assign(bms_belief_ah=[], bms_err0=[], t_last_full=[])
    rng = np.random.default_rng([seed, 4051])
    v = a.vehicle_idx.to_numpy()
    kind = a.kind.to_numpy()
    drive = kind == 0
    cap = a.cap_ah.to_numpy()
    t0 = a.t_start.to_numpy()
    nfr = a.n_frames.to_numpy()
    s0, s1 = a.soc0.to_numpy(), a.soc1.to_numpy()
    full = a.full.to_numpy().astype(bool)
    first = np.r_[True, v[1:] != v[:-1]]

    # capacity belief: BOL capacity minus the tracked share of the fade, refreshed per epoch
    bol = (fl.rated_ah.to_numpy() * fl.bol_factor.to_numpy())[v]
    period = vp.belief_update_days.to_numpy()[v]
    track = vp.belief_tracking.to_numpy()[v]
    epoch = np.where(period > 0, np.floor(t0 / day_s / np.where(period > 0, period, 1)
                                          + vp.belief_phase.to_numpy()[v]), np.arange(n))
    key = pd.Series(cap).groupby([v, epoch], sort=False).transform("first").to_numpy()
    err = pd.Series(rng.normal(0, 1, n)).groupby([v, epoch], sort=False).transform(
        "first").to_numpy() * sc.belief_error_sd
    belief = (bol - track * (bol - key)) * (1 + err)

    # each activity's counting error, in % SOC (BMS change − true change)
    gain = vp.current_gain.to_numpy()[v]
    off = vp.current_offset_a.to_numpy()[v]
    eta = vp.charge_efficiency.to_numpy()[v]
    dur_h = (nfr - 1) * dt_s / 3600
    ah_true = np.abs(s1 - s0) / 100 * cap  # stored (charge) or drawn (drive)
    ah_drive = gain * ah_true + off * dur_h  # what the BMS counts out
    ah_charge = sc.bms_charge_efficiency * (gain * ah_true / eta - off * dur_h)  # ... and in
    d_bms = np.where(drive, -100 * ah_drive / belief, 100 * ah_charge / belief)
    d_err = d_bms - (s1 - s0)

    # restart points and values
    gap_h = np.r_[0.0, (t0[1:] - (t0[:-1] + (nfr[:-1] - 1) * dt_s))] / 3600
    lfp = (fl.chemistry.to_numpy() == "LFP")[v]
    lo, hi = sc.lfp_plateau
    rest_ok = (gap_h >= vp.ocv_reset_rest_h.to_numpy()[v]) & ~first
    ocv = rest_ok & ~(lfp & (s0 > lo) & (s0 < hi))
    prev_drive = np.r_[True, drive[:-1]]
    relax = vp.ocv_relax_bias_pct.to_numpy()[v] * np.where(prev_drive, -1.0, 1.0)
    ocv_val = relax + rng.normal(0, 1, n) * sc.ocv_reset_sd
    after_full = np.r_[False, full[:-1]] & ~first
    full_val = np.r_[0.0, 100 - s1[:-1]]
    init_val = vp.initial_soc_error_pct.to_numpy()[v]

    reset = first | ocv | after_full
    val = np.where(first, init_val, np.where(ocv, ocv_val, full_val))
    for _ in range(200):
        j = _last_true_index(reset)
        c = np.concatenate([[0.0], np.cumsum(d_err)])
        e0 = val[j] + c[np.arange(n)] - c[j]
        # the BMS never counts beyond 0 or 100 %: where the previous activity's count ran past
        # it, the next one starts from the clamped value
        e_end = e0 + d_err
        bms_end = s1 + e_end
        over = np.r_[False, (bms_end[:-1] > 100) | (bms_end[:-1] < 0)] & ~reset
        if not over.any():
            break
        ks = np.flatnonzero(over)  # the first clamp of each vehicle in this pass
        firsts = ks[np.r_[True, v[ks][1:] != v[ks][:-1]]]
        reset[firsts] = True
        val[firsts] = np.clip(bms_end[firsts - 1], 0, 100) - s1[firsts - 1]
    a["bms_belief_ah"] = belief
    a["bms_err0"] = e0

    # end of the last full charge before each activity (balancing at the top of charge)
    t_end = t0 + (nfr - 1) * dt_s
    tf = np.where(full, t_end, -np.inf)
    tf = pd.Series(tf).groupby(v, sort=False).cummax().to_numpy()
    prev = np.r_[-np.inf, tf[:-1]]
    prev = np.where(first, -np.inf, prev)
    never = ~np.isfinite(prev)
    pre = -rng.uniform(0, 20, n) * day_s  # before the window: some time in the last 20 days
    a["t_last_full"] = np.where(never, pd.Series(pre).groupby(v).transform("first").to_numpy(),
                                prev)
    return a
