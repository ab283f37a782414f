"""A tiny landing zone in the exact contract schema, with one example of each injected defect.

Two clean vehicles (one reporting discharge current as negative) over two days of 10-s frames,
plus: an exact duplicate, a late cmd-3 re-send in a `resend-*.parquet` file, legit cmd-3 frames
(link outage, pre-alarm 1-s frame), markers, out-of-range spikes, an odometer jump and a reset
to 0, a pack-voltage mismatch, cross-field contradictions, a clock-future frame in a future dt
partition, a before-service frame in dt=2000-01-01, a malformed and an unknown VIN, a corrupt
file, a truncated file, a file missing a column, an empty file and an empty partition directory.

`EXPECTED` lists what the cleaning must report for each defect.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from nev_battery.landing import MASTER_SCHEMA, REALTIME_SCHEMA

V1 = "LNVTEST0000000001"  # NCM, discharge positive
V2 = "LNVTEST0000000002"  # LFP, OEM reports discharge as negative -> ODS flips
V_UNKNOWN = "LNVTEST0000000099"  # valid VIN, not in the master
V_MALFORMED = "LNVTEST00000000I1"  # contains I
DAY1 = dt.date(2024, 3, 1)
DAY2 = dt.date(2024, 3, 2)
EMPTY_DAY = dt.date(2024, 3, 3)
FUTURE_DAY = dt.date(2024, 3, 6)
N_FRAMES = 360  # 08:00:00 .. 08:59:50 every 10 s
N_CELLS = 96
N_PROBES = 16
START = dt.time(8, 0, 0)


@dataclass
class Expected:
    vin: str
    collect_time: dt.datetime
    reason_code: str
    field_name: str
    action: str


@dataclass
class Fixture:
    root: Path
    expected: list[Expected] = field(default_factory=list)
    dates: list[dt.date] = field(default_factory=list)
    # landing rows that ODS must read (valid files only)
    valid_rows: int = 0


def _t(day: dt.date, k: int) -> dt.datetime:
    return dt.datetime.combine(day, START) + dt.timedelta(seconds=10 * k)


def _frame(vin: str, day: dt.date, k: int, odo_base: int, flipped: bool) -> dict:
    ct = _t(day, k)
    cells = [3700 + (i % 5) for i in range(N_CELLS)]
    return {
        "vin": vin,
        "cmd": 2,
        "collect_time": ct,
        "receive_time": ct + dt.timedelta(seconds=1),
        "vehicle_status": 1,
        "charge_status": 3,
        "run_mode": 1,
        "speed": 600,
        # 60 km/h = 1/6 km per 10 s = 1.667 codes of 0.1 km
        "odometer": odo_base + (k * 10) // 6,
        "total_voltage": round(sum(cells) / 100),
        # 50 A discharge; V2 reports it as -50 A
        "total_current": 9500 if flipped else 10500,
        "soc": 80,
        "dcdc_status": 1,
        "gear": 32 | 14,
        "insulation_resistance": 5000,
        "accel_pedal": 20,
        "brake_pedal": 0,
        "max_volt_subsys": 1,
        "max_volt_cell_no": 5,
        "max_cell_voltage": max(cells),
        "min_volt_subsys": 1,
        "min_volt_cell_no": 1,
        "min_cell_voltage": min(cells),
        "max_temp_subsys": 1,
        "max_temp_probe_no": 2,
        "max_temp": 66,
        "min_temp_subsys": 1,
        "min_temp_probe_no": 3,
        "min_temp": 64,
        "max_alarm_level": 0,
        "general_alarm_flags": 0,
        "battery_fault_codes": [],
        "cell_voltages": cells,
        "probe_temps": [65] * N_PROBES,
    }


def _write(path: Path, rows: list[dict], schema: dict[str, pa.DataType] = REALTIME_SCHEMA) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=pa.schema(list(schema.items())))
    pq.write_table(table, path)


def master_rows() -> list[dict]:
    base = {
        "vehicle_model": "M1",
        "rated_capacity_ah": 150.0,
        "rated_energy_kwh": 53.0,
        "cells_in_series": N_CELLS,
        "temp_probes": N_PROBES,
        "in_service_date": dt.date(2023, 6, 1),
        "usage_type": "private",
        "region": "Beijing",
    }
    return [
        {**base, "vin": V1, "chemistry": "NCM", "current_discharge_positive": True},
        {**base, "vin": V2, "chemistry": "LFP", "current_discharge_positive": False},
        # chemistry not NCM/LFP: kept in ODS, dropped from dws_vehicle -> its frames are unknown_vin
        {
            **base,
            "vin": "LNVTEST0000000003",
            "chemistry": "XYZ",
            "current_discharge_positive": True,
        },
    ]


def write_landing_fixture(root: Path) -> Fixture:
    fx = Fixture(root=root, dates=[dt.date(2000, 1, 1), DAY1, DAY2, FUTURE_DAY])
    exp = fx.expected
    rt = root / "gbt32960_realtime"
    _write(root / "vehicle_master" / "part-0000.parquet", master_rows(), MASTER_SCHEMA)

    for day in (DAY1, DAY2):
        d = "dt=" + day.isoformat()
        rows: list[dict] = []
        resend: list[dict] = []
        v1 = [_frame(V1, day, k, 123450 + (day - DAY1).days * 1000, False) for k in range(N_FRAMES)]
        v2 = [_frame(V2, day, k, 543210 + (day - DAY1).days * 1000, True) for k in range(N_FRAMES)]
        if day == DAY1:
            # exact duplicate (same cmd and receive_time) in the same file
            v1.append(dict(v1[10]))
            exp.append(Expected(V1, v1[10]["collect_time"], "duplicate", "row", "reject_row"))
            # late cmd-3 re-send of an already received frame, in a separate file
            late = dict(v1[20], cmd=3, receive_time=v1[20]["receive_time"] + dt.timedelta(days=2))
            resend.append(late)
            exp.append(Expected(V1, late["collect_time"], "resend_duplicate", "row", "reject_row"))
            # link outage: frames 30..32 only arrive as cmd-3 re-sends -> kept
            for k in (30, 31, 32):
                resend.append(
                    dict(v1[k], cmd=3, receive_time=v1[k]["receive_time"] + dt.timedelta(hours=1))
                )
            v1 = [f for i, f in enumerate(v1) if i not in (30, 31, 32)]
            # pre-alarm 1-s frame between two 10-s frames, cmd 3 -> kept
            pre = dict(v1[35], cmd=3)
            pre["collect_time"] = v1[35]["collect_time"] + dt.timedelta(seconds=1)
            pre["receive_time"] = pre["collect_time"] + dt.timedelta(seconds=30)
            resend.append(pre)
            # markers (vehicle kept, fields nulled)
            f = v1[40 - 3]  # index shift: 3 frames moved to the re-send file
            f["speed"] = 0xFFFE
            f["soc"] = 0xFF
            f["cell_voltages"] = list(f["cell_voltages"])
            f["cell_voltages"][3] = 0xFFFF
            f["probe_temps"] = list(f["probe_temps"])
            f["probe_temps"][2] = 0xFE
            f["odometer"] = 0xFFFFFFFE
            t = f["collect_time"]
            exp += [
                Expected(V1, t, "abnormal_marker", "speed", "null_field"),
                Expected(V1, t, "invalid_marker", "soc", "null_field"),
                Expected(V1, t, "invalid_marker", "cell_voltages", "null_field"),
                Expected(V1, t, "abnormal_marker", "probe_temps", "null_field"),
                Expected(V1, t, "abnormal_marker", "odometer", "null_field"),
            ]
            # out-of-range spikes
            f = v1[50 - 3]
            f["speed"] = 40000
            exp.append(Expected(V1, f["collect_time"], "out_of_range", "speed", "null_field"))
            f = v1[52 - 3]
            f["cell_voltages"] = list(f["cell_voltages"])
            f["cell_voltages"][5] = 200  # 0.2 V
            exp.append(
                Expected(V1, f["collect_time"], "out_of_range", "cell_voltages", "null_field")
            )
            f = v1[53 - 3]
            f["max_temp"] = 253  # 213 degC
            exp.append(Expected(V1, f["collect_time"], "out_of_range", "max_temp", "null_field"))
            # pack voltage vs. sum of cells
            f = v1[55 - 3]
            f["total_voltage"] = 4500
            exp.append(
                Expected(
                    V1, f["collect_time"], "pack_voltage_mismatch", "total_voltage", "null_field"
                )
            )
            # odometer single-frame jump and a 3-frame reset to 0
            f = v1[60 - 3]
            f["odometer"] += 5000
            exp.append(
                Expected(V1, f["collect_time"], "odometer_glitch", "odometer", "correct_field")
            )
            for k in (70, 71, 72):
                f = v1[k - 3]
                f["odometer"] = 0
                exp.append(
                    Expected(V1, f["collect_time"], "odometer_glitch", "odometer", "correct_field")
                )
            # charging status with a discharge current
            f = v1[95 - 3]
            f["charge_status"] = 1
            exp.append(
                Expected(
                    V1,
                    f["collect_time"],
                    "charging_with_discharge_current",
                    "charge_status",
                    "null_field",
                )
            )
            # braking without travel value: decoded, not quarantined
            v1[100 - 3]["brake_pedal"] = 101
            # clock ahead: collect_time shifted +5 days, lands in a future dt partition
            f = v1.pop(80 - 3)
            f["collect_time"] = f["collect_time"] + dt.timedelta(days=5)
            _write(rt / ("dt=" + FUTURE_DAY.isoformat()) / "part-0000.parquet", [f])
            exp.append(Expected(V1, f["collect_time"], "clock_future", "row", "reject_row"))
            # V2: vehicle off while moving
            v2[90]["vehicle_status"] = 2
            exp.append(
                Expected(
                    V2,
                    v2[90]["collect_time"],
                    "speed_with_vehicle_off",
                    "vehicle_status",
                    "null_field",
                )
            )
            # V2: RTC reset to 2000-01-01 -> before_service, in dt=2000-01-01
            f = v2.pop(100)
            f["collect_time"] = dt.datetime(2000, 1, 1, 0, 0, 10)
            _write(rt / "dt=2000-01-01" / "part-0000.parquet", [f])
            exp.append(Expected(V2, f["collect_time"], "before_service", "row", "reject_row"))
            # malformed and unknown VINs
            bad = _frame(V_MALFORMED, day, 5, 1000, False)
            unk = _frame(V_UNKNOWN, day, 5, 1000, False)
            xyz = _frame("LNVTEST0000000003", day, 5, 1000, False)
            rows += [bad, unk, xyz]
            exp += [
                Expected(V_MALFORMED, bad["collect_time"], "malformed_vin", "row", "reject_row"),
                Expected(V_UNKNOWN, unk["collect_time"], "unknown_vin", "row", "reject_row"),
                Expected(
                    "LNVTEST0000000003", xyz["collect_time"], "unknown_vin", "row", "reject_row"
                ),
            ]
            # zero-row file: valid, flagged empty_file
            _write(rt / d / "empty-0001.parquet", [])
        else:
            # corrupt bytes and a truncated parquet file: reported, not read
            (rt / d).mkdir(parents=True, exist_ok=True)
            (rt / d / "corrupt-0001.parquet").write_bytes(b"PAR1 this is not parquet at all")
            _write(rt / d / "truncated-0001.parquet", v1[:5])
            p = rt / d / "truncated-0001.parquet"
            p.write_bytes(p.read_bytes()[:-20])
            # a file missing the speed column
            schema = {k: v for k, v in REALTIME_SCHEMA.items() if k != "speed"}
            _write(
                rt / d / "missing-0001.parquet",
                [{k: v for k, v in r.items() if k != "speed"} for r in v1[:5]],
                schema,
            )
        rows += v1 + v2
        _write(rt / d / "part-0000.parquet", rows)
        fx.valid_rows += len(rows)
        if resend:
            _write(rt / d / "resend-0001.parquet", resend)
            fx.valid_rows += len(resend)
    fx.valid_rows += 2  # clock-future and before-service files
    (rt / ("dt=" + EMPTY_DAY.isoformat())).mkdir(parents=True, exist_ok=True)
    return fx


if __name__ == "__main__":
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "data/landing")
    fixture = write_landing_fixture(out)
    print(f"wrote {out}: {fixture.valid_rows} valid rows, {len(fixture.expected)} expected defects")
