"""Benchmarks (``make bench``): measured side by side in one run on this machine.

1. Simulator throughput (frames/s, writing Parquet included).
2. The daily DWS build of one day of a large fleet on DuckDB (default 10,000 vehicles, about
   9.5 M frames with per-cell arrays), against two reference scans of the same files in the same
   run: all columns (the arrays dominate) and scalar columns only.

Results are printed and written to ``bench/results/latest.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import duckdb

from .simulate import SimConfig, simulate
from .warehouse import PROJECT_DIR, build


def _scan_seconds(glob: str, columns: list[str]) -> tuple[float, int]:
    """Time one full read of ``columns``: every value is touched by an aggregate (lists through
    ``len`` and their first element), so DuckDB must decode the column chunks, not only the
    row-group statistics."""
    con = duckdb.connect()
    aggs = []
    for c in columns:
        if c in ("cell_voltages", "probe_temps"):
            aggs += [f"sum(len({c}))", f"sum({c}[1])"]
        else:
            aggs.append(f"count({c})")
    t0 = time.perf_counter()
    row = con.execute(f"select count(*), {', '.join(aggs)} from read_parquet('{glob}')").fetchone()
    return time.perf_counter() - t0, int(row[0])


def run(vehicles: int, days: int, workdir: Path) -> str:
    if workdir.exists():
        shutil.rmtree(workdir)
    landing, truth = workdir / "landing", workdir / "truth"
    sim = simulate(SimConfig(vehicles=vehicles, days=days, seed=42), landing, truth)
    lines = ["# Benchmarks", "",
             (f"machine: {os.cpu_count()} cores; fleet {vehicles:,} vehicles x {days} day(s), "
              f"{sim.frames:,} landed frames"), "",
             "| step | seconds | frames/s | relative |", "|---|---:|---:|---:|",
             (f"| simulate (plan, frames, dirty data, Parquet) | {sim.seconds:.1f} | "
              f"{sim.frames_per_s:,.0f} | |")]

    glob = str(landing / "gbt32960_realtime" / "*" / "*.parquet")
    t_all, n = _scan_seconds(glob, ["vin", "collect_time", "cell_voltages", "probe_temps", "soc",
                                     "odometer"])
    t_scalar, _ = _scan_seconds(glob, ["vin", "collect_time", "soc", "odometer", "total_current",
                                        "speed"])

    os.environ["NEV_LANDING_ROOT"] = str(landing)
    os.environ["NEV_DUCKDB_PATH"] = str(workdir / "bench.duckdb")
    os.environ["DBT_TARGET_PATH"] = str(workdir / "target")
    os.environ["DBT_LOG_PATH"] = str(workdir / "logs")
    res = build(full_refresh=True, select="+dws_realtime_frame +dws_quarantine",
                extra_args=["--exclude-resource-type", "test"])
    if not res.ok:
        raise SystemExit("dbt run failed:\n" + "\n".join(res.failures))
    lines += [
        f"| scan all columns incl. cell arrays (reference) | {t_all:.1f} | {n / t_all:,.0f} | 1.0 |",
        (f"| scan scalar columns only (reference) | {t_scalar:.1f} | {n / t_scalar:,.0f} | "
         f"{t_scalar / t_all:.2f} |"),
        (f"| dbt run ODS + DWS (dedup, limits, cross-field, odometer, quarantine) | "
         f"{res.seconds:.1f} | {n / res.seconds:,.0f} | {res.seconds / t_all:.2f} |"),
        "",
        (f"target: one 9.5 M-frame day of a 10,000-vehicle fleet in <= 60 s; this run: "
         f"{n:,} frames in {res.seconds:.1f} s"),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nev_battery.bench")
    # 7,000 vehicles: about 9.7 M frames on a simulated day, the design point of 9.5 M
    p.add_argument("--vehicles", type=int, default=7_000)
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--workdir", default=str(PROJECT_DIR / "bench" / "work"))
    args = p.parse_args(argv)
    report = run(args.vehicles, args.days, Path(args.workdir))
    print(report)
    out = PROJECT_DIR / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.md").write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
