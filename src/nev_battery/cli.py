"""Command-line interface: ``nev-battery <command>``."""

from __future__ import annotations

import argparse
import sys


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .simulate import main_simulate, summarize_sessions

    res = main_simulate(args.vehicles, args.days, args.seed, args.out, args.truth,
                        args.start_date, args.fault_share, args.dirty_scale)
    s = summarize_sessions(args.truth)
    print(f"simulated {res.vehicles} vehicles x {args.days} days: {res.frames:,} frames in "
          f"{res.files} files, {res.seconds:.1f} s ({res.frames_per_s:,.0f} frames/s)")
    print(f"charge sessions {s['sessions']:,}: start SOC median {s['start_soc_median']:.0f} "
          f"(IQR {s['start_soc_iqr'][0]:.0f}-{s['start_soc_iqr'][1]:.0f}), end SOC median "
          f"{s['end_soc_median']:.0f} (IQR {s['end_soc_iqr'][0]:.0f}-{s['end_soc_iqr'][1]:.0f}), "
          f"DC share {s['dc_share']:.0%}")
    print(f"faults {res.faults}, dirty records {res.dirty_records:,}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(res.counts.items())))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nev-battery", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("simulate", help="simulate a fleet: landing zone + ground truth")
    s.add_argument("--vehicles", type=int, default=50)
    s.add_argument("--days", type=int, default=14)
    s.add_argument("--seed", type=int, default=7)
    s.add_argument("--out", default="data/landing")
    s.add_argument("--truth", default="data/truth")
    s.add_argument("--start-date", default=None, help="YYYY-MM-DD (default 2026-03-01)")
    s.add_argument("--fault-share", type=float, default=0.03)
    s.add_argument("--dirty-scale", type=float, default=1.0,
                   help="multiplier on the dirty-record rates (0 = clean data)")
    s.set_defaults(func=_cmd_simulate)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
