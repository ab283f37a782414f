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
