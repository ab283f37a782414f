"""Measure the warehouse against a simulated fleet's ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

# which quarantine reason codes count as catching each injected defect
ACCEPTED_REASONS = {
    "duplicate": ("duplicate", "resend_duplicate"),
    "late_resend": ("duplicate", "resend_duplicate"),
    "abnormal_marker": ("abnormal_marker",),
    "invalid_marker": ("invalid_marker",),
    "out_of_range": ("out_of_range",),
    "odometer_glitch": ("odometer_glitch",),
    "clock_error": ("clock_future", "before_service"),
    "status_conflict": ("speed_with_vehicle_off", "charging_with_discharge_current"),
    "pack_voltage_mismatch": ("pack_voltage_mismatch",),
}
# copies of one frame: caught per copy, not per key
COPY_DEFECTS = ("duplicate", "late_resend")


@dataclass
class CleaningReport:
    per_defect: pd.DataFrame
    recall: float
    clean_frames: int
    clean_frames_touched: int
    sign_flip_vehicles: int
    sign_flip_corrected: int

    @property
    def false_touch_rate(self) -> float:
        return self.clean_frames_touched / self.clean_frames if self.clean_frames else 0.0

    def format(self) -> str:
        lines = ["defect                   injected   caught   recall"]
        for r in self.per_defect.itertuples():
            lines.append(f"{r.defect:<24} {r.injected:>8} {r.caught:>8} {r.recall:>8.2%}")
        lines.append(f"{'sign_flip (vehicles)':<24} {self.sign_flip_vehicles:>8} "
                     f"{self.sign_flip_corrected:>8}")
        lines.append(f"overall recall {self.recall:.3%} (rejected or corrected); clean frames "
                     f"touched {self.clean_frames_touched:,} of {self.clean_frames:,} = "
                     f"{self.false_touch_rate:.4%}")
        return "\n".join(lines)


def evaluate_cleaning(con: duckdb.DuckDBPyConnection, truth: Path | str) -> CleaningReport:
    """Recall of injected dirty records and false-touch rate of clean frames.

    A defect is caught when dws_quarantine holds a row for the same (vin, collect_time) with an
    accepted reason; exact and re-sent copies are counted per copy. Clean frames are the
    distinct (vin, collect_time) keys of ODS that no defect was injected into; frames of a
    vehicle with an injected sensor fault after its onset are excluded, because a probe that
    drops out *should* be nulled (that is a fault, not dirty data)."""
    truth = Path(truth)
    con.execute(f"create or replace temp table _dirty as select * from "
                f"read_parquet('{truth / 'dirty_records.parquet'}')")
    con.execute(f"create or replace temp table _faults as select * from "
                f"read_parquet('{truth / 'fault_events.parquet'}')")
    acc = pd.DataFrame([(d, r) for d, rs in ACCEPTED_REASONS.items() for r in rs],
                       columns=["defect", "reason_code"])
    con.register("_accepted", acc)
    per = con.execute("""
        with t as (
            select defect, vin, collect_time, count(*) as injected
            from _dirty where collect_time is not null group by all
        ),
        q as (
            select vin, collect_time, reason_code, count(*) as n
            from dws.dws_quarantine group by all
        ),
        hit as (
            select t.defect, t.vin, t.collect_time, t.injected,
                   coalesce(sum(q.n), 0) as quarantined
            from t
            left join _accepted a on a.defect = t.defect
            left join q on q.vin = t.vin and q.collect_time = t.collect_time
                       and q.reason_code = a.reason_code
            group by all
        )
        select defect, sum(injected) as injected,
               sum(case when defect in ('duplicate', 'late_resend')
                        then least(injected, quarantined)
                        else case when quarantined > 0 then injected else 0 end end) as caught
        from hit group by defect order by defect
    """).df()
    # duplicate and late-resend copies of one key share their quarantine rows
    per["injected"] = per.injected.astype(int)
    per["caught"] = per.caught.astype(int)
    per["recall"] = per.caught / per.injected
    clean, touched = con.execute("""
        with dirty_keys as (
            select distinct vin, collect_time from _dirty where collect_time is not null
        ),
        fault_windows as (
            select vin, onset_time from _faults where fault_type = 'sensor_fault'
        ),
        ods_keys as (
            select distinct o.vin, o.collect_time from ods.ods_gbt32960_realtime o
            anti join dirty_keys d on d.vin = o.vin and d.collect_time = o.collect_time
            anti join fault_windows f on f.vin = o.vin and o.collect_time >= f.onset_time
        ),
        touched as (
            select distinct q.vin, q.collect_time from dws.dws_quarantine q
            semi join ods_keys k on k.vin = q.vin and k.collect_time = q.collect_time
        )
        select (select count(*) from ods_keys), (select count(*) from touched)
    """).fetchall()[0]
    flips = con.execute("""
        select count(*), count(*) filter (where med < 0) from (
            select d.vin, median(f.total_current_a) as med
            from (select distinct vin from _dirty where defect = 'sign_flip') d
            join dws.dws_realtime_frame f on f.vin = d.vin and f.charge_status = 1
            group by d.vin)
    """).fetchall()[0]
    total = per.injected.sum()
    return CleaningReport(
        per_defect=per,
        recall=float(per.caught.sum() / total) if total else 1.0,
        clean_frames=int(clean),
        clean_frames_touched=int(touched),
        sign_flip_vehicles=int(flips[0]),
        sign_flip_corrected=int(flips[1]),
    )


@dataclass
class ChargeReport:
    true_sessions: int
    segments: int
    found: int
    spurious: int  # segments overlapping no true session, or a second piece of one
    exact_bounds: int
    start_soc_exact: int
    end_soc_exact: int
    ah_rel_err: pd.Series  # |segment Ah - true Ah| / true Ah of the found sessions
    ah_total_rel_err: float
    ah_cal_rel_err: pd.Series  # the same after the vehicle's current-offset calibration

    @property
    def recall(self) -> float:
        return self.found / self.true_sessions if self.true_sessions else 1.0

    @property
    def spurious_rate(self) -> float:
        return self.spurious / self.segments if self.segments else 0.0

    def ah_within(self, tol: float, calibrated: bool = False) -> float:
        e = self.ah_cal_rel_err if calibrated else self.ah_rel_err
        return float((e <= tol).mean()) if len(e) else 1.0

    def passes(self) -> bool:
        """The DWD targets: >= 99 % of true sessions found, <= 1 % spurious segments, start and
        end SOC exact, charged Ah (offset-calibrated) within 2 % for >= 99 % of sessions."""
        n = max(self.found, 1)
        return (self.recall >= 0.99 and self.spurious_rate <= 0.01
                and self.start_soc_exact / n >= 0.99 and self.end_soc_exact / n >= 0.99
                and self.ah_within(0.02, calibrated=True) >= 0.99)

    def format(self) -> str:
        e, c = self.ah_rel_err, self.ah_cal_rel_err
        return "\n".join([
            f"true charging sessions {self.true_sessions:,}; segments {self.segments:,}",
            (f"found {self.found:,} = {self.recall:.2%}; spurious {self.spurious:,} = "
             f"{self.spurious_rate:.2%} of segments; same first and last frame "
             f"{self.exact_bounds / max(self.found, 1):.2%}"),
            (f"start SOC exact {self.start_soc_exact / max(self.found, 1):.2%}, end SOC exact "
             f"{self.end_soc_exact / max(self.found, 1):.2%}"),
            (f"charged Ah vs truth, as measured: median |error| {e.median():.3%}, "
             f"P95 {e.quantile(0.95):.3%}, max {e.max():.3%}; within 2 %: "
             f"{self.ah_within(0.02):.2%}; fleet total {self.ah_total_rel_err:+.3%}"),
            (f"charged Ah vs truth, offset-calibrated: median |error| {c.median():.3%}, "
             f"P95 {c.quantile(0.95):.3%}, max {c.max():.3%}; within 2 %: "
             f"{self.ah_within(0.02, calibrated=True):.2%}"),
        ])


def evaluate_charges(con: duckdb.DuckDBPyConnection, truth: Path | str) -> ChargeReport:
    """dwd_charge_segment against the simulator's true charging sessions.

    A true session is found when a segment of the same vehicle overlaps it in time; its match
    is the segment with the largest overlap. A segment is spurious when it overlaps no true
    session or is not the match of the session it overlaps (a session cut in two)."""
    path = Path(truth) / "charge_sessions.parquet"
    con.execute(f"create or replace temp table _sessions as select row_number() over () as sid, "
                f"* from read_parquet('{path}')")
    con.execute("""
        create or replace temp table _pairs as
        select t.sid, s.vin, s.start_time, s.end_time as seg_end,
               t.start_time as true_start, t.end_time as true_end,
               s.start_soc_pct, s.end_soc_pct, t.start_soc, t.end_soc,
               s.charged_ah, t.charged_ah as true_ah,
               -- |I_true| = |I_reported| + offset while charging
               s.charged_ah + coalesce(o.current_offset_a, 0) * s.charging_s / 3600
                   as charged_ah_cal,
               epoch(least(s.end_time, t.end_time)) - epoch(greatest(s.start_time, t.start_time))
                   as overlap_s
        from dwd.dwd_charge_segment s
        join _sessions t on t.vin = s.vin and s.start_time <= t.end_time
                        and s.end_time >= t.start_time
        left join dwd.dwd_vehicle_current_offset o on o.vin = s.vin
    """)
    m = con.execute("""
        with best as (
            select *, row_number() over (partition by sid order by overlap_s desc, start_time)
                   as rk
            from _pairs
        )
        select * from best where rk = 1
    """).df()
    n_true = con.execute("select count(*) from _sessions").fetchall()[0][0]
    (n_seg,) = con.execute("select count(*) from dwd.dwd_charge_segment").fetchall()[0]
    # segments that are some true session's match (the best pairs above)
    n_matched = len(m[["vin", "start_time"]].drop_duplicates())
    err = ((m.charged_ah - m.true_ah).abs() / m.true_ah.where(m.true_ah > 0)).dropna()
    cal = ((m.charged_ah_cal - m.true_ah).abs() / m.true_ah.where(m.true_ah > 0)).dropna()
    return ChargeReport(
        true_sessions=int(n_true),
        segments=int(n_seg),
        found=len(m),
        spurious=int(n_seg - n_matched),
        exact_bounds=int(((m.start_time == m.true_start) & (m.seg_end == m.true_end)).sum()),
        start_soc_exact=int((m.start_soc_pct == m.start_soc).sum()),
        end_soc_exact=int((m.end_soc_pct == m.end_soc).sum()),
        ah_rel_err=err.reset_index(drop=True),
        ah_total_rel_err=float(m.charged_ah.sum() / m.true_ah.sum() - 1) if len(m) else 0.0,
        ah_cal_rel_err=cal.reset_index(drop=True),
    )


@dataclass
class SohReport:
    """SOH against the simulator's true SOH on held-out vehicles (never used for training)."""

    model_version: str
    holdout_vehicles: int
    vehicle_days: int  # held-out vehicle-days with a true SOH and an estimate
    true_vehicle_days: int  # held-out vehicle-days of the truth from each vehicle's first estimate
    table: pd.DataFrame  # method x scope: n, rmse, mae, max, within_2pp
    coverage90: float

    def row(self, method: str, scope: str) -> pd.Series:
        t = self.table
        return t[(t.method == method) & (t.scope == scope)].iloc[0]

    def passes(self, rmse: float = 1.0, max_err: float = 3.0, within: float = 0.95,
               coverage: tuple[float, float] = (0.85, 0.95)) -> bool:
        m = self.row("model", "all days")
        beat = all(self.row("model", s).rmse < self.row(b, s).rmse
                   for b, s in (("raw observation", "days with an observation"),
                                ("rolling median", "days after the first observation")))
        return (m.rmse <= rmse and m.max_abs <= max_err and m.within_2pp >= within
                and coverage[0] <= self.coverage90 <= coverage[1] and beat)

    def format(self) -> str:
        lines = [(f"model {self.model_version}; {self.holdout_vehicles} held-out vehicles, "
                 f"{self.vehicle_days:,} vehicle-days estimated of {self.true_vehicle_days:,}"),
                 (f"{'method':<16} {'scope':<34} {'n':>7} {'RMSE pp':>8} {'MAE pp':>7} "
                 f"{'max pp':>7} {'<=2 pp':>7}")]
        for r in self.table.itertuples():
            lines.append(f"{r.method:<16} {r.scope:<34} {r.n:>7,} {r.rmse:>8.3f} {r.mae:>7.3f} "
                         f"{r.max_abs:>7.2f} {r.within_2pp:>7.2%}")
        lines.append(f"90 % interval covers the true SOH on {self.coverage90:.2%} of vehicle-days")
        return "\n".join(lines)


def _errors(err: pd.Series) -> dict:
    e = err.dropna().abs()
    if e.empty:
        return {"n": 0, "rmse": float("nan"), "mae": float("nan"), "max_abs": float("nan"),
                "within_2pp": float("nan")}
    return {"n": int(e.size), "rmse": float((e**2).mean() ** 0.5), "mae": float(e.mean()),
            "max_abs": float(e.max()), "within_2pp": float((e <= 2.0).mean())}


def evaluate_soh(con: duckdb.DuckDBPyConnection, truth: Path | str) -> SohReport:
    """ads_vehicle_soh against vehicle_daily.parquet's true_soh_pct, on the vehicles the model's
    hold-out rule kept out of training, side by side with the two baselines on the same days:
    the day's raw capacity observation and the rolling median of the latest observations."""
    from .soh import is_holdout

    path = Path(truth) / "vehicle_daily.parquet"
    # rows keep the version that produced them (a daily run after a retrain applies the new
    # one to the days it rebuilds): every version present, with the hold-out rule they share
    versions = con.execute("""
        select m.model_version, m.holdout_share from dwd.dwd_soh_model as m
        where m.model_version in (select distinct model_version from ads.ads_vehicle_soh)
        order by m.version_number
    """).fetchall()
    if not versions:
        raise ValueError("ads.ads_vehicle_soh is empty: no SOH model has been trained yet")
    shares = {s for _, s in versions}
    if len(shares) > 1:
        raise ValueError(f"SOH rows of models with different hold-out shares: {sorted(shares)}")
    version, share = ", ".join(v for v, _ in versions), shares.pop()
    est = con.execute("select * from ads.ads_vehicle_soh").df()
    tr = pd.read_parquet(path, columns=["vin", "date", "true_soh_pct"])
    tr["date"] = pd.to_datetime(tr["date"]).dt.date
    est["date"] = pd.to_datetime(est["as_of_date"]).dt.date
    hold = set(est.loc[is_holdout(est["vin"], share), "vin"])
    first = est[est.vin.isin(hold)].groupby("vin")["date"].min().rename("first")
    tr = tr[tr.vin.isin(hold)].join(first, on="vin")
    tr = tr[tr["date"] >= tr["first"]]
    m = tr.merge(est, on=["vin", "date"], how="inner")
    err = m.soh_pct - m.true_soh_pct
    has_obs = m.raw_observation_pct.notna()
    after = m.rolling_median_observation_pct.notna()
    rows = []
    for method, scope, e in (
        ("model", "all days", err),
        ("model", "days with an observation", err[has_obs]),
        ("raw observation", "days with an observation",
         (m.raw_observation_pct - m.true_soh_pct)[has_obs]),
        ("model", "days after the first observation", err[after]),
        ("rolling median", "days after the first observation",
         (m.rolling_median_observation_pct - m.true_soh_pct)[after]),
    ):
        rows.append({"method": method, "scope": scope, **_errors(e)})
    inside = (m.true_soh_pct >= m.soh_lower_pct) & (m.true_soh_pct <= m.soh_upper_pct)
    return SohReport(model_version=version, holdout_vehicles=len(hold), vehicle_days=len(m),
                     true_vehicle_days=len(tr), table=pd.DataFrame(rows),
                     coverage90=float(inside.mean()) if len(m) else float("nan"))


# ------------------------------------------------------------------------------------------
# warnings
# ------------------------------------------------------------------------------------------

# fault types whose hazard the warnings must anticipate (issue targets: recall and lead time)
HAZARD_FAULTS = ("thermal_runaway_precursor", "internal_short")


@dataclass
class WarningReport:
    per_fault: pd.DataFrame  # fault type x source (warnings / BMS): vehicles, recall, lead, ...
    vehicle_days: int
    healthy_vehicle_days: int
    false_level2_per_1000: float  # warnings of level >= 2 on healthy vehicles per 1000 vehicle-days
    false_level1_per_1000: float
    bms_false_level2_per_1000: float
    precision_level2: float  # level >= 2 episodes on a faulty vehicle after its onset / all
    bms_precision_level2: float
    auroc: float  # vehicle-level: max daily risk score, faulty vs healthy
    thermal_events: int
    thermal_events_level3_before: int
    hazard_recall_level2: float
    hazard_median_lead_h: float
    association: pd.DataFrame
    # ads_warning_rule_firing_rate: each rule's and detector's fleet firing rate (empty if absent)
    firing: pd.DataFrame | None = None

    def passes(self) -> bool:
        return (self.hazard_recall_level2 >= 0.9 and self.hazard_median_lead_h >= 24
                and self.thermal_events_level3_before == self.thermal_events
                and self.false_level2_per_1000 <= 1.0 and self.auroc >= 0.95)

    def format(self) -> str:
        lines = [("fault type                 source    vehicles  recall>=2  recall>=1  "
                 "median lead h")]
        for r in self.per_fault.itertuples():
            lead = "" if pd.isna(r.median_lead_h) else f"{r.median_lead_h:.1f}"
            lines.append(f"{r.fault_type:<26} {r.source:<9} {r.vehicles:>8}  "
                         f"{r.recall_level2:>9.0%}  {r.recall_level1:>9.0%}  {lead:>13}")
        lines += [
            (f"thermal-runaway precursors and internal shorts: recall at level >= 2 "
            f"{self.hazard_recall_level2:.0%}, median lead {self.hazard_median_lead_h:.1f} h"),
            (f"thermal events warned at level 3 before they happen: "
            f"{self.thermal_events_level3_before} of {self.thermal_events}"),
            (f"false warnings on healthy vehicles ({self.healthy_vehicle_days:,} vehicle-days): "
            f"level >= 2 {self.false_level2_per_1000:.2f} per 1000 vehicle-days, level 1 "
            f"{self.false_level1_per_1000:.2f}; the BMS's own level >= 2 alarms "
            f"{self.bms_false_level2_per_1000:.2f}"),
            (f"precision at level >= 2 (episodes on a faulty vehicle after its onset): warnings "
            f"{self.precision_level2:.1%}, BMS alarms {self.bms_precision_level2:.1%}"),
            f"vehicle-level AUROC of the risk score {self.auroc:.3f}",
            (f"association rules kept {len(self.association)}; between alarms the simulator makes "
            f"independent with lift > 2: {int(self.independent_high_lift())}"),
        ]
        if self.firing is not None and len(self.firing):
            lines += ["", self.format_firing()]
        return "\n".join(lines)

    def format_firing(self) -> str:
        """The fleet firing rate of each rule and detector that fired (ads_warning_rule_firing_rate),
        per vehicle model and chemistry, noisiest first: per 1,000 vehicle-days at any level, at the
        configured level >= 2 and at level >= 2 after the fleet calibration, and the share of the
        scope's vehicles it fired on."""
        f = self.firing[self.firing.firing_vehicle_days > 0].sort_values(
            ["configured_level2_per_1000", "firing_per_1000"], ascending=False)
        lines = [("fleet firing rate per 1000 vehicle-days (ads_warning_rule_firing_rate; "
                  "L2 = level >= 2, configured / after calibration)"),
                 (f"{'source':<34} {'model':<10} {'chem':<5} {'any':>7} {'L2 conf':>8} "
                  f"{'L2 cal':>7} {'vehicles':>10}  noisy")]
        for r in f.itertuples():
            src = f"{r.source_type}:{r.source_name}"
            lines.append(f"{src:<34} {r.vehicle_model:<10} {r.chemistry:<5} "
                         f"{r.firing_per_1000:>7.1f} {r.configured_level2_per_1000:>8.1f} "
                         f"{r.level2_per_1000:>7.1f} {r.firing_vehicles:>4}/{r.vehicles:<3} "
                         f"{r.firing_vehicle_share:>4.0%}  {'yes' if r.is_noisy else ''}")
        return "\n".join(lines)

    def independent_high_lift(self) -> int:
        a = self.association
        return int(((a.antecedent.isin(INDEPENDENT_ALARMS)) & (a.consequent.isin(INDEPENDENT_ALARMS))
                    & (a.lift > 2)).sum()) if len(a) else 0


# the non-battery alarms the simulator raises at random, independently of each other
INDEPENDENT_ALARMS = tuple(f"alarm:{n}" for n in (
    "dcdc_temperature", "braking_system", "dcdc_status", "motor_controller_temperature",
    "high_voltage_interlock", "motor_temperature"))


def _auroc(pos: pd.Series, neg: pd.Series) -> float:
    """P(score of a faulty vehicle > score of a healthy one), ties counting one half."""
    if not len(pos) or not len(neg):
        return float("nan")
    allv = pd.concat([pos, neg], ignore_index=True)
    ranks = allv.rank(method="average")
    r_pos = ranks.iloc[: len(pos)].sum()
    return float((r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def evaluate_warnings(con: duckdb.DuckDBPyConnection, truth: Path | str) -> WarningReport:
    """ads_battery_warning and ads_vehicle_risk_daily against fault_events.parquet, side by side
    with the BMS's own GB/T 32960 battery alarms (dwd_alarm_event) as the baseline.

    A faulty vehicle is detected when a warning (an alarm) of the level is active after the
    fault's onset (or the vehicle's first day, for an onset before it) and before its hazard
    time; the lead time is hazard time - the first such warning reaching level 2. Precision:
    the share of level >= 2 warnings on the fault's vehicles that start after its onset. A
    false warning is one on a vehicle without any injected fault."""
    faults = pd.read_parquet(Path(truth) / "fault_events.parquet")
    faults["onset_time"] = pd.to_datetime(faults["onset_time"])
    faults["hazard_time"] = pd.to_datetime(faults["hazard_time"])
    w = con.execute("select vin, warning_type, level, start_time, end_time, first_level2_time "
                    "from ads.ads_battery_warning").df()
    bms = con.execute("""select vin, alarm_name as warning_type, alarm_level as level, start_time,
                                end_time, case when alarm_level >= 2 then start_time end
                                as first_level2_time
                         from dwd.dwd_alarm_event where is_battery_alarm""").df()
    days = con.execute("select vin, count(*) as n from dwd.dwd_vehicle_daily group by vin").df()
    faulty = set(faults.vin)
    healthy_days = int(days.loc[~days.vin.isin(faulty), "n"].sum())
    end_of_data = pd.Timestamp(con.execute(
        "select max(date) from dwd.dwd_vehicle_daily").fetchone()[0]) + pd.Timedelta(days=1)

    rows = []
    hazard_hits, hazard_leads = [], []
    for source, table in (("warnings", w), ("BMS", bms)):
        for ftype, fs in faults.groupby("fault_type"):
            m = table.merge(fs[["vin", "onset_time", "hazard_time"]], on="vin")
            until = m.hazard_time.fillna(end_of_data)
            # active after the onset and starting before the hazard
            live = (m.end_time >= m.onset_time) & (m.start_time < until)
            l2 = live & (m.level >= 2)
            hit2 = set(m.loc[l2, "vin"])
            hit1 = set(m.loc[live, "vin"])
            first2 = m.loc[l2].assign(t=m.loc[l2, "first_level2_time"].fillna(
                m.loc[l2, "start_time"])).groupby("vin").t.min()
            lead = (fs.set_index("vin").hazard_time - first2).dropna().dt.total_seconds() / 3600
            rows.append({"fault_type": ftype, "source": source, "vehicles": fs.vin.nunique(),
                         "recall_level2": len(hit2) / fs.vin.nunique(),
                         "recall_level1": len(hit1) / fs.vin.nunique(),
                         "median_lead_h": float(lead.median()) if len(lead) else float("nan")})
            if source == "warnings" and ftype in HAZARD_FAULTS:
                hazard_hits += [v in hit2 for v in fs.vin]
                hazard_leads += lead.tolist()
    per = pd.DataFrame(rows).sort_values(["fault_type", "source"], ascending=[True, False],
                                         ignore_index=True)

    def false_rate(table, level):
        t = table[~table.vin.isin(faulty)]
        n = (t.level >= 2).sum() if level == 2 else (t.level == 1).sum()
        return 1000 * n / healthy_days if healthy_days else float("nan")

    def precision(table):
        t = table[table.level >= 2].merge(faults.groupby("vin").onset_time.min().reset_index(),
                                          on="vin", how="left")
        return float((t.end_time >= t.onset_time).mean()) if len(t) else float("nan")

    thermal = faults[(faults.fault_type == "thermal_runaway_precursor")
                     & faults.hazard_time.notna()]
    l3 = w[w.level >= 3].merge(thermal[["vin", "hazard_time", "onset_time"]], on="vin")
    before = set(l3.loc[(l3.start_time < l3.hazard_time) & (l3.end_time >= l3.onset_time), "vin"])
    risk = con.execute("select vin, max(risk_score) as score from ads.ads_vehicle_risk_daily "
                       "group by vin").df()
    assoc = con.execute("select * from ads.ads_fault_association").df()
    try:
        firing = con.execute("select * from ads.ads_warning_rule_firing_rate").df()
    except duckdb.Error:  # a warehouse built before the model existed
        firing = None
    return WarningReport(
        per_fault=per, vehicle_days=int(days.n.sum()), healthy_vehicle_days=healthy_days,
        false_level2_per_1000=false_rate(w, 2), false_level1_per_1000=false_rate(w, 1),
        bms_false_level2_per_1000=false_rate(bms, 2),
        precision_level2=precision(w), bms_precision_level2=precision(bms),
        auroc=_auroc(risk.loc[risk.vin.isin(faulty), "score"],
                     risk.loc[~risk.vin.isin(faulty), "score"]),
        thermal_events=len(thermal), thermal_events_level3_before=len(before & set(thermal.vin)),
        hazard_recall_level2=float(pd.Series(hazard_hits).mean()) if hazard_hits else float("nan"),
        hazard_median_lead_h=float(pd.Series(hazard_leads).median()) if hazard_leads
        else float("nan"),
        association=assoc, firing=firing)
