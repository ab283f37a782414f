"""Command-line interface: ``nev-battery <command>``.

simulate   write a simulated fleet's landing zone and ground truth (--to-kafka: its frames to a
           Kafka topic as GB/T 32960 binary)
ingest     consume GB/T 32960 frames from Kafka into the landing zone (exactly once)
build      dbt build of the warehouse (full, or the days given with --dates)
daily      the daily incremental run: a date, a look-back window and late partitions
backfill   rebuild a date range
summary    rows per layer, quarantined rows by reason, landing-file problems
evaluate   compare the warehouse with the simulator's ground truth (cleaning, charges, SOH,
           warnings), or every simulator scenario side by side (evaluate scenarios)
export     write the served ADS tables from the DuckDB warehouse to the lake as Parquet
publish    export, then load the months into ClickHouse (serving layer, --target clickhouse*)
rules      check the warning and cleaning rules, push the seeds to MySQL or pull them back
demo       simulate the demo fleet, build it on DuckDB and print the summary (make run)
bi         Apache Superset dashboards over the ADS (bi up / bi down / bi status; bi/dashboards.yml)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import date
from pathlib import Path


def _cmd_simulate(args: argparse.Namespace) -> int:
    import shutil
    import tempfile

    from .simulate import main_simulate, summarize_sessions

    out = args.out
    if args.to_kafka:
        if not args.kafka_bootstrap:
            print("nev-battery simulate: --to-kafka needs --kafka-bootstrap or "
                  "NEV_KAFKA_BOOTSTRAP", file=sys.stderr)
            return 2
        out = tempfile.mkdtemp(prefix="nev-sim-")
    res = main_simulate(args.vehicles, args.days, args.seed, out, args.truth,
                        args.start_date, args.fault_share, args.dirty_scale, args.scenario)
    if args.to_kafka:
        from .ingest import ensure_topic, produce, realtime_frames

        try:
            t0 = time.perf_counter()
            frames, keys, ts = realtime_frames(Path(out), args.max_cells_per_frame)
            ensure_topic(args.kafka_bootstrap, args.topic, args.partitions)
            n = produce(args.kafka_bootstrap, args.topic, frames, keys, ts)
            # the vehicle master stays a separate input: written to --out as before
            master = Path(args.out) / "vehicle_master"
            shutil.rmtree(master, ignore_errors=True)
            master.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(Path(out) / "vehicle_master", master)
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(f"produced {n:,} GB/T 32960 frames to {args.topic} at {args.kafka_bootstrap} in "
              f"{time.perf_counter() - t0:.1f} s; vehicle master in {master}")
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


def _report_build(res) -> int:
    scope = "all days" if res.batch_dates is None else f"{len(res.batch_dates)} day(s)"
    for note in res.notes:
        print(f"NOTE: {note}")
    print(f"dbt build ({scope}) {'succeeded' if res.ok else 'FAILED'} in {res.seconds:.1f} s")
    for f in res.failures:
        print(f"  {short_error(f)}", file=sys.stderr)
    return 0 if res.ok else 1


def short_error(message: str, max_lines: int = 12) -> str:
    """A failure as the user needs it: without a JVM stack trace (Spark's errors carry ~190
    lines of `at org.apache…` that dbt has printed already) and at most max_lines lines."""
    keep = []
    for line in str(message).splitlines():
        s = line.strip()
        if s.startswith(("at ", "... ")) and ("(" in s or s.endswith("more")):
            continue
        keep.append(line)
    if len(keep) > max_lines:
        keep = keep[:max_lines] + [f"  … ({len(keep) - max_lines} more lines in logs/dbt.log)"]
    return "\n".join(keep)


def iso_date(text: str) -> date:
    """argparse type of the date flags: YYYY-MM-DD and a real date, else a usage error."""
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date YYYY-MM-DD") from None


def iso_dates(text: str) -> list[str]:
    return [str(iso_date(d.strip())) for d in text.split(",")]


def _number(kind: type, minimum: float, inclusive: bool, what: str):
    """An argparse type: a number of `kind` at least (inclusive) or above `minimum`."""
    def parse(text: str):
        try:
            x = kind(text)
        except ValueError:
            x = None
        if x is None or not (x >= minimum if inclusive else x > minimum):
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
        return x
    return parse


non_negative_int = _number(int, 0, True, "a whole number >= 0")
positive_int = _number(int, 0, False, "a whole number > 0")
positive_float = _number(float, 0.0, False, "a number > 0")


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


def _skip(args: argparse.Namespace) -> list[str]:
    return ["--exclude-resource-type", "test"] if args.skip_tests else []


def _vars(args: argparse.Namespace) -> dict:
    import yaml

    out = {}
    for kv in args.var or []:
        key, sep, value = kv.partition("=")
        if not sep or not key.strip():
            raise SystemExit(f"nev-battery: --var expects KEY=VALUE, got {kv!r}")
        out[key.strip()] = yaml.safe_load(value)
    if args.retrain_soh:
        out["soh_retrain"] = True
    return out


def _cmd_build(args: argparse.Namespace) -> int:
    from .warehouse import build

    return _report_build(build(args.dates, full_refresh=args.full_refresh, select=args.select,
                               target=args.target, extra_vars=_vars(args),
                               extra_args=_skip(args), allow_shrink=args.allow_shrink))


def _cmd_daily(args: argparse.Namespace) -> int:
    from .warehouse import build, daily_batch

    batch = daily_batch(args.date, args.lookback_days)
    print(f"daily run for {args.date}: rebuilding {', '.join(batch)}")
    return _report_build(build(batch, select=args.select, target=args.target,
                               extra_vars=_vars(args), extra_args=_skip(args),
                               allow_shrink=args.allow_shrink))


def _cmd_backfill(args: argparse.Namespace) -> int:
    from .warehouse import backfill_batch, build

    batch = backfill_batch(args.start, args.end)
    print(f"backfill {args.start} to {args.end}: rebuilding {len(batch)} day(s)")
    return _report_build(build(batch, select=args.select, target=args.target,
                               extra_vars=_vars(args), extra_args=_skip(args),
                               allow_shrink=args.allow_shrink))


def _cmd_ingest(args: argparse.Namespace) -> int:
    from .ingest import IngestConfig, ingest

    if not args.bootstrap:
        print("nev-battery ingest: no Kafka cluster: give --bootstrap or set NEV_KAFKA_BOOTSTRAP",
              file=sys.stderr)
        return 2
    cfg = IngestConfig(bootstrap=args.bootstrap, landing=Path(args.landing), topic=args.topic,
                       group=args.group, roll_messages=args.roll_messages,
                       roll_bytes=args.roll_mb << 20, roll_seconds=args.roll_seconds,
                       idle_exit=args.idle_exit, session_timeout_ms=args.session_timeout_ms,
                       extra=dict(args.kafka_config or []))
    t0 = time.perf_counter()
    st = ingest(cfg)
    rej = ", ".join(f"{k} {v}" for k, v in sorted(st.rejected.items())) or "none"
    print(f"ingested {st.messages:,} messages from {args.topic} in "
          f"{time.perf_counter() - t0:.1f} s: {st.realtime_rows:,} real-time rows, "
          f"{st.sessions:,} login/logout, rejected {rej}; {st.files} files, {st.commits} commits")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    from .warehouse import connect, format_summary, summary

    with connect() as con:
        print(format_summary(summary(con)))
    return 0


# the demo fleet (make run): long enough for monthly SOH percentiles and the 30-day fade of the
# watch list, with faults and fast-ageing packs so that every ADS table has rows
DEMO_DAYS = 45
DEMO_FAULT_SHARE = 0.12
DEMO_FAST_AGEING = 3

# what each evaluation's targets are, as printed after its report
EVALUATION_TARGETS = {
    "charges": "found >= 99 %, spurious <= 1 %, SOC exact, Ah",
    "soh": ("RMSE <= 1.0 pp, max <= 3 pp, >= 95 % within 2 pp, 90 % interval covering "
            "85-95 %, beats both baselines"),
    "warnings": ("thermal precursors and internal shorts: recall >= 90 % at level >= 2, median "
                 "lead >= 24 h; every thermal event at level 3 before it; <= 1 false level >= 2 "
                 "per 1000 healthy vehicle-days; AUROC >= 0.95"),
}


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from . import evaluate
    from .warehouse import connect

    if args.what == "scenarios":
        from .scenario_eval import main_args

        return main_args(args)
    with connect() as con:
        if args.what == "cleaning":
            rep = evaluate.evaluate_cleaning(con, args.truth)
            print(rep.format())
            ok = rep.recall >= 0.99 and rep.false_touch_rate <= 0.001
            return 0 if ok or not args.enforce else 1
        rep = getattr(evaluate, f"evaluate_{args.what}")(con, args.truth)
        print(rep.format())
        ok = rep.passes()
        print(f"targets ({EVALUATION_TARGETS[args.what]}): {'met' if ok else 'NOT met'}")
        return 0 if ok or not args.enforce else 1


def _cmd_spark(args: argparse.Namespace) -> int:
    from .spark_server import default_server

    srv = default_server()
    if args.action == "start":
        pid = srv.start()
        print(f"Spark server pid {pid}: thrift 127.0.0.1:{srv.thrift_port}, Spark Connect "
              f"sc://127.0.0.1:{srv.connect_port}, warehouse {srv.workdir}")
    elif args.action == "stop":
        print("stopped" if srv.stop() else "no Spark server running")
    else:
        pid = srv.pid()
        print(f"running, pid {pid}" if pid else "not running")
        return 0 if pid else 1
    return 0


def yesterday() -> date:
    from datetime import timedelta

    return date.today() - timedelta(days=1)


def demo_start(end: date, days: int) -> date:
    """First simulated day of a demo whose last day is `end`: the served tables keep
    serving_ttl_months (6) by date, so a demo ending yesterday is served whole."""
    from datetime import timedelta

    return end - timedelta(days=days - 1)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_charges, evaluate_cleaning
    from .simulate import main_simulate
    from .warehouse import build, connect, format_summary, summary

    t0 = time.perf_counter()
    start = demo_start(args.end_date, args.days)
    sim = main_simulate(args.vehicles, args.days, args.seed, args.out, args.truth,
                        start_date=str(start), fault_share=args.fault_share,
                        fast_ageing=args.fast_ageing, end_at_horizon=True)
    print(f"simulated {sim.vehicles} vehicles x {args.days} days ({start} to {args.end_date}, "
          f"{sim.faults} with a fault, {args.fast_ageing} fast-ageing): {sim.frames:,} frames "
          f"({sim.seconds:.1f} s, {sim.frames_per_s:,.0f} frames/s)")
    # the build reads the landing zone just written
    os.environ["NEV_LANDING_ROOT"] = str(Path(args.out).resolve())
    # dbt quiet: warnings and errors only (the log, logs/dbt.log, keeps every line)
    res = build(full_refresh=True, quiet=True)
    rc = _report_build(res)
    if rc:
        return rc
    with connect() as con:
        print(format_summary(summary(con)))
        print("cleaning against the simulator's dirty-record truth:")
        print(evaluate_cleaning(con, args.truth).format())
        print("charge segments against the simulator's true sessions:")
        print(evaluate_charges(con, args.truth).format())
    print(f"make run total {time.perf_counter() - t0:.1f} s (simulate {sim.seconds:.1f} s, "
          f"dbt build {res.seconds:.1f} s)")
    print(next_steps())
    return 0


def next_steps() -> str:
    from .warehouse import duckdb_path

    venv = "" if os.environ.get("VIRTUAL_ENV") else ".venv/bin/"
    return "\n".join([
        "",
        "Next steps:",
        f"  warehouse    {duckdb_path()} (DuckDB; schemas ods, dws, dwd, ads)",
        f"  docs         {venv}dbt docs generate && {venv}dbt docs serve",
        f"  publish      {venv}nev-battery publish --target clickhouse_local  (ClickHouse, chdb)",
        f"  dashboards   {venv}nev-battery bi up  (Superset on 127.0.0.1; installs it once)",
        f"  daily run    {venv}nev-battery daily --date YYYY-MM-DD  (README: Incremental)",
    ])


def _export(months: list[str] | None):
    from .lake import export_ads, lake_root
    from .warehouse import connect, duckdb_path

    if not duckdb_path().exists():
        raise SystemExit(f"nev-battery: no DuckDB warehouse at {duckdb_path()} (build it first)")
    t0 = time.perf_counter()
    with connect() as con:
        res = export_ads(con, lake_root(), months)
    n = sum(sum(v.values()) for v in res.rows.values())
    print(f"exported {len(res.rows)} ADS tables, {n:,} rows, months "
          f"{', '.join(res.months()) or '-'} to {res.root} in {time.perf_counter() - t0:.1f} s")
    for table, empty in sorted(res.emptied.items()):
        print(f"  {table}: no rows in {', '.join(empty)} (empty file written)")
    return res


def _cmd_export(args: argparse.Namespace) -> int:
    from .lake import LakeError, parse_months

    try:
        _export(parse_months(args.months))
    except LakeError as e:
        print(f"nev-battery export: {e}", file=sys.stderr)
        return 1
    return 0


# dbt adapter types that are ClickHouse: dbt-clickhouse (a server) and dbt-nev-chdb (chdb)
CLICKHOUSE_TYPES = ("clickhouse", "nevchdb")


def _clickhouse_target(name: str) -> str:
    """argparse type of publish --target: a target of profiles.yml whose adapter is ClickHouse.
    On any other target the serving models are disabled and the compute layers enabled, so a
    publish would rebuild that warehouse and publish nothing: refused before anything runs."""
    import yaml

    from .warehouse import PROJECT_DIR

    profiles = PROJECT_DIR / "profiles.yml"
    outputs = yaml.safe_load(profiles.read_text())["nev_battery"]["outputs"]
    ours = ", ".join(t for t, o in outputs.items() if o.get("type") in CLICKHOUSE_TYPES)
    if name not in outputs:
        raise argparse.ArgumentTypeError(f"no target {name!r} in {profiles} (the ClickHouse "
                                         f"targets: {ours})")
    kind = outputs[name].get("type")
    if kind not in CLICKHOUSE_TYPES:
        raise argparse.ArgumentTypeError(
            f"{name!r} is a {kind} target, not a ClickHouse one: publish loads the lake into "
            f"ClickHouse (targets: {ours}); to build the warehouse use nev-battery build "
            f"--target {name}")
    return name


def _cmd_publish(args: argparse.Namespace) -> int:
    from .lake import LakeError, check_lake, lake_months, lake_root, parse_months
    from .warehouse import build

    try:
        months = parse_months(args.months)
        if months and args.full_refresh:
            # a full refresh recreates each served table from the months it reads: with --months
            # every other month would be lost
            raise LakeError("--full-refresh recreates the served tables from every month in the "
                            "lake; it takes no --months")
        if not args.skip_export:
            exported = _export(months)
            months = months or exported.months()
        # the months always named: a month the lake holds no rows for is then emptied on the
        # served side too (macro serving_drop_emptied_months)
        months = months or lake_months(lake_root())
        check_lake(lake_root(), months)
    except LakeError as e:
        print(f"nev-battery publish: {e}", file=sys.stderr)
        return 1
    # absolute: dbt's var lake_root is relative to the project, and the serving models read the
    # lake there unless it has an address of its own on the server (NEV_LAKE_URL, macro lake_url())
    os.environ["NEV_LAKE_ROOT"] = str(lake_root().resolve())
    extra = dict(_vars(args), publish_months=months or None)
    print(f"publishing {'months ' + ', '.join(months) if months else 'every month'} "
          f"to target {args.target}")
    return _report_build(build(select=args.select, target=args.target, extra_vars=extra,
                               full_refresh=args.full_refresh, extra_args=_skip(args)))


def _cmd_bi(args: argparse.Namespace) -> int:
    from . import bi

    try:
        if args.action == "venv":
            print(f"BI virtualenv: {bi.ensure_venv().parent.parent}")
            return 0
        if args.action == "down":
            print("Superset stopped" if bi.down() else "Superset is not running")
            return 0
        if args.action == "status":
            srv = bi.running()
            print(f"Superset running at {srv.url} (pid {srv.pid}, source {srv.source})" if srv
                  else "Superset is not running")
            return 0 if srv else 1
        srv = bi.up(args.source, args.port)
    except bi.BIError as e:
        print(f"nev-battery bi {args.action}: {e}", file=sys.stderr)
        return 1
    print(f"Superset at {srv.url} (source {srv.source}; stop it with nev-battery bi down)")
    print(f"  log in as {bi.ADMIN}, password in {bi.superset_home() / 'admin_password'}: "
          f"{bi.admin_password()}")
    for slug, url in bi.dashboard_urls(srv).items():
        print(f"  {slug:<20} {url}")
    return 0


def _cmd_rules(args: argparse.Namespace) -> int:
    from . import rules

    url = getattr(args, "url", None) or rules.rules_url()
    if args.action in ("push", "pull") and not url:
        print(f"nev-battery rules {args.action}: no database: give --url mysql://user:password@"
              f"host:3306/database or set {rules.RULES_URL_ENV}", file=sys.stderr)
        return 2
    if args.action == "check":
        src = rules.load_mysql(url) if url and not args.seeds else rules.load_seeds(args.dir)
        counts = ", ".join(f"{t} {len(v)}" for t, v in src.tables.items())
        print(f"rules from {src.source} ({src.origin}) are valid: {counts}; version "
              f"{src.version}")
    elif args.action == "push":
        src = rules.load_seeds(args.dir)
        counts = rules.push_mysql(url, src)
        print(f"pushed the seeds in {args.dir} to {rules.redact(url)}: "
              + ", ".join(f"{t} {n} rows" for t, n in counts.items())
              + f"; version {src.version}")
    else:
        src = rules.load_mysql(url)
        paths = rules.write_seed_csvs(src.tables, args.dir)
        print(f"pulled the rules of {rules.redact(url)} (version {src.version}) into "
              + ", ".join(str(p) for p in paths))
    return 0


def _scenario_names() -> list[str]:
    from .scenarios import SCENARIOS

    return list(SCENARIOS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nev-battery", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="simulate a fleet: landing zone + ground truth")
    s.add_argument("--vehicles", type=int, default=50, help="vehicles in the fleet (default 50)")
    s.add_argument("--days", type=int, default=14, help="days simulated (default 14)")
    s.add_argument("--seed", type=int, default=7, help="random seed of the fleet (default 7)")
    s.add_argument("--out", default="data/landing",
                   help="landing zone written (default data/landing)")
    s.add_argument("--truth", default="data/truth",
                   help="ground truth written: sessions, faults, dirty records (default "
                        "data/truth)")
    s.add_argument("--start-date", default=None,
                   help="first simulated day, YYYY-MM-DD (default 2026-03-01, fixed so that "
                        "results are reproducible; nev-battery demo ends yesterday instead)")
    s.add_argument("--fault-share", type=float, default=0.03,
                   help="share of vehicles with a battery fault (default 0.03)")
    s.add_argument("--dirty-scale", type=float, default=1.0,
                   help="multiplier on the dirty-record rates (0 = clean data)")
    s.add_argument("--scenario", default="baseline",
                   help="how the BMS and the pack behave: " + ", ".join(_scenario_names())
                   + " (nev_battery.scenarios; baseline = the simulator's own assumptions)")
    s.add_argument("--to-kafka", action="store_true",
                   help="send the fleet's real-time frames as GB/T 32960 binary to a Kafka topic "
                        "(keyed by VIN, timestamp = receive time) instead of writing "
                        "gbt32960_realtime/; the vehicle master is still written to --out")
    s.add_argument("--kafka-bootstrap", default=os.environ.get("NEV_KAFKA_BOOTSTRAP"),
                   help="Kafka bootstrap servers for --to-kafka (default: env NEV_KAFKA_BOOTSTRAP)")
    s.add_argument("--topic", default="gbt32960", help="topic for --to-kafka (default gbt32960)")
    s.add_argument("--partitions", type=positive_int, default=6,
                   help="partitions of the topic when --to-kafka creates it (default 6)")
    s.add_argument("--max-cells-per-frame", type=positive_int, default=200,
                   help="cells per frame before a pack is split over several frames (default 200,"
                        " the 2016 standard's limit)")
    s.set_defaults(func=_cmd_simulate)

    s = sub.add_parser("ingest", help="consume GB/T 32960 frames from Kafka into the landing "
                                      "zone, exactly once (docs/ingest.md)")
    s.add_argument("--bootstrap", default=os.environ.get("NEV_KAFKA_BOOTSTRAP"),
                   help="Kafka bootstrap servers (default: env NEV_KAFKA_BOOTSTRAP)")
    s.add_argument("--topic", default="gbt32960", help="topic of the frames (default gbt32960)")
    s.add_argument("--group", default="nev-battery-ingest",
                   help="consumer group (default nev-battery-ingest)")
    s.add_argument("--landing", default=os.environ.get("NEV_LANDING_ROOT", "data/landing"),
                   help="landing root (default: env NEV_LANDING_ROOT, else data/landing)")
    s.add_argument("--roll-messages", type=positive_int, default=50_000,
                   help="cut a partition's file after this many messages (default 50000)")
    s.add_argument("--roll-mb", type=positive_int, default=64,
                   help="cut a partition's file after this many MB of frames (default 64)")
    s.add_argument("--roll-seconds", type=positive_float, default=60.0,
                   help="cut a file open this long on a quiet partition (default 60)")
    s.add_argument("--idle-exit", type=positive_float, default=None,
                   help="stop after this many seconds without a message (default: run until "
                        "SIGTERM/SIGINT; both land what is open, commit and leave the group)")
    s.add_argument("--session-timeout-ms", type=positive_int, default=45_000,
                   help="consumer-group session timeout (default 45000)")
    s.add_argument("--kafka-config", action="append", type=key_value, metavar="KEY=VALUE",
                   help="a librdkafka consumer setting (repeatable), e.g. "
                        "security.protocol=SASL_SSL")
    s.set_defaults(func=_cmd_ingest)

    for name, fn, hlp in (("build", _cmd_build, "dbt build (all days, or --dates)"),
                          ("daily", _cmd_daily, "daily incremental run"),
                          ("backfill", _cmd_backfill, "rebuild a date range")):
        b = sub.add_parser(name, help=hlp)
        b.add_argument("--select", default=None,
                       help="dbt selection, e.g. +ads_vehicle_soh or tag:dwd (default: all)")
        b.add_argument("--target", default=None,
                       help="profiles.yml target: duckdb (default), spark; the ClickHouse "
                            "targets are for nev-battery publish")
        b.add_argument("--skip-tests", action="store_true", help="models only, no data tests")
        b.add_argument("--retrain-soh", action="store_true",
                       help="train a new SOH model version (default: only when none exists)")
        b.add_argument("--var", action="append", metavar="KEY=VALUE",
                       help="a dbt var for this run (repeatable), e.g. --var soh_holdout_share=0.5")
        b.add_argument("--allow-shrink", action="store_true",
                       help="rebuild days whose processed landing files vanished, shrank or "
                            "became unreadable, deleting their rows (recorded in "
                            "main.nev_history_shrink); without it such a run is refused")
        if name == "build":
            b.add_argument("--dates", default=None, type=iso_dates,
                           help="rebuild only these days, comma-separated YYYY-MM-DD (default: "
                                "every day)")
            b.add_argument("--full-refresh", action="store_true",
                           help="rebuild every table from the landing zone (incremental "
                                "tables included)")
        elif name == "daily":
            b.add_argument("--date", required=True, type=iso_date,
                           help="the run date, YYYY-MM-DD: its day is rebuilt (with "
                                "--lookback-days before it and any day a late file landed in)")
            b.add_argument("--lookback-days", type=non_negative_int, default=0,
                           help="also rebuild this many days before the run date (late files "
                                "are found by the landing listing anyway)")
        else:
            b.add_argument("--start", required=True, type=iso_date,
                           help="first day rebuilt, YYYY-MM-DD")
            b.add_argument("--end", required=True, type=iso_date,
                           help="last day rebuilt, YYYY-MM-DD, >= --start")
            b.set_defaults(parser=b)
        b.set_defaults(func=fn)

    s = sub.add_parser("spark", help="a local Spark server (Thrift + Spark Connect) for the "
                                     "spark target")
    s.add_argument("action", choices=["start", "stop", "status"],
                   help="start the local server (a fresh warehouse), stop it, or tell whether "
                        "it runs")
    s.set_defaults(func=_cmd_spark)

    s = sub.add_parser("summary", help="rows per layer and quarantine by reason")
    s.set_defaults(func=_cmd_summary)

    s = sub.add_parser("evaluate", help="compare the warehouse with the ground truth")
    s.add_argument("what", choices=["cleaning", "charges", "soh", "warnings", "scenarios"],
                   help="scenarios: simulate, build and evaluate a fleet per simulator scenario "
                        "(nev_battery.scenario_eval) and print every figure per scenario")
    s.add_argument("--truth", default="data/truth",
                   help="the simulator's ground truth (default data/truth)")
    s.add_argument("--enforce", action="store_true", help="exit 1 when a target is missed")
    from .scenario_eval import add_arguments

    add_arguments(s)
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("export", help="write the served ADS tables to the lake (Parquet)")
    s.add_argument("--months", default=None, help="comma-separated YYYY-MM (default: all)")
    s.set_defaults(func=_cmd_export)

    s = sub.add_parser("publish", help="export, then load the months into ClickHouse")
    s.add_argument("--months", default=None, help="comma-separated YYYY-MM (default: all)")
    s.add_argument("--target", default="clickhouse", type=_clickhouse_target,
                   help="clickhouse (a server) or clickhouse_local (chdb): a ClickHouse target")
    s.add_argument("--skip-export", action="store_true", help="publish what the lake holds")
    s.add_argument("--select", default=None,
                   help="dbt selection of serving models, e.g. srv_vehicle_soh (default: all)")
    s.add_argument("--skip-tests", action="store_true", help="models only, no data tests")
    s.add_argument("--full-refresh", action="store_true",
                   help="rebuild the served tables from the lake's months")
    s.add_argument("--var", action="append", metavar="KEY=VALUE", help="a dbt var (repeatable)")
    s.set_defaults(func=_cmd_publish, retrain_soh=False)

    s = sub.add_parser(
        "rules", help="the warning and cleaning rules: check them, push the seeds to MySQL, "
                      "pull MySQL into the seeds",
        description="Rules live in the seeds (seeds/warning_rules.csv, signal_range_limits.csv, "
                    "detector_settings.csv; the default) or in a MySQL/MariaDB database when "
                    "NEV_RULES_URL is set. Exit code 2 when a rule row is refused.")
    s.add_argument("action", choices=["check", "push", "pull"],
                   help="check: validate the rules a run would use (MySQL when a URL is given "
                        "or NEV_RULES_URL is set, else the seeds) and print their version; "
                        "push: replace the database's rule tables by the seed CSVs (tables "
                        "created with the seeds' schema when missing); pull: write the "
                        "database's rules over the seed CSVs")
    s.add_argument("--url", default=None,
                   help="the rules database, mysql://user:password@host:port/database "
                        "(default: env NEV_RULES_URL)")
    s.add_argument("--dir", default=str(_seeds_dir()), type=Path,
                   help="the folder of the seed CSVs pushed from or pulled into (default: the "
                        "project's seeds/)")
    s.add_argument("--seeds", action="store_true",
                   help="check: validate the seed CSVs even when NEV_RULES_URL is set")
    s.set_defaults(func=_cmd_rules)

    s = sub.add_parser("bi", help="Apache Superset dashboards over the ADS: bi up, bi down, "
                                  "bi status (dashboards as code: bi/dashboards.yml)")
    s.add_argument("action", choices=["up", "down", "status", "venv"],
                   help="up: create the BI virtualenv if missing, provision the dashboards and "
                        "start Superset on 127.0.0.1; down: stop it; status: is it running; "
                        "venv: only create the BI virtualenv (.venv-bi, requirements-bi.lock)")
    s.add_argument("--source", choices=["auto", "duckdb", "clickhouse"], default="auto",
                   help="what the ADS datasets read: the DuckDB warehouse (read-only) or the "
                        "published ClickHouse tables on chdb (default auto: clickhouse once "
                        "published to clickhouse_local, else duckdb)")
    s.add_argument("--port", type=positive_int, default=None,
                   help="port on 127.0.0.1 (default: a free one)")
    s.set_defaults(func=_cmd_bi)

    s = sub.add_parser("demo", help="simulate the demo fleet up to yesterday, build it, print "
                                    "the summary (make run)")
    s.add_argument("--vehicles", type=positive_int, default=50,
                   help="vehicles in the demo fleet (default 50)")
    s.add_argument("--days", type=positive_int, default=DEMO_DAYS,
                   help=f"days simulated, ending on --end-date (default {DEMO_DAYS})")
    s.add_argument("--end-date", type=iso_date, default=yesterday(),
                   help="last simulated day, YYYY-MM-DD (default yesterday: the demo is recent, "
                        "so a publish on the default six-month TTL serves all of it)")
    s.add_argument("--seed", type=int, default=7, help="random seed of the fleet (default 7)")
    s.add_argument("--fault-share", type=float, default=DEMO_FAULT_SHARE,
                   help=f"share of vehicles with a battery fault (default {DEMO_FAULT_SHARE}: "
                        "the warning dashboards have something to show)")
    s.add_argument("--fast-ageing", type=non_negative_int, default=DEMO_FAST_AGEING,
                   help=f"vehicles whose pack aged several times faster than the fleet's "
                        f"(default {DEMO_FAST_AGEING}: the SOH watch list has entries)")
    s.add_argument("--out", default="data/landing",
                   help="landing zone written (default data/landing)")
    s.add_argument("--truth", default="data/truth",
                   help="simulator ground truth written (default data/truth)")
    s.set_defaults(func=_cmd_demo)
    return p


def _seeds_dir() -> Path:
    from .warehouse import PROJECT_DIR

    return PROJECT_DIR / "seeds"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nev-battery")
    except PackageNotFoundError:
        return "unknown (not installed)"


# commands that open the warehouse: one at a time (warehouse.warehouse_lock)
LOCKED = {"build", "daily", "backfill", "summary", "evaluate", "export", "publish", "demo"}


def main(argv: list[str] | None = None) -> int:
    from .rules import RulesError
    from .warehouse import WarehouseError, warehouse_lock

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "backfill" and args.end < args.start:
        args.parser.error(f"argument --end: {args.end} is before --start {args.start}")
    try:
        # evaluate scenarios works on fleet folders of its own (each build takes that fleet's
        # lock), never on the project's warehouse
        scenarios = args.command == "evaluate" and args.what == "scenarios"
        if args.command in LOCKED and not scenarios:
            with warehouse_lock(args.command):
                return args.func(args)
        return args.func(args)
    except RulesError as e:
        # bad rule rows (or no rules database): refused before any model ran
        print(f"nev-battery {args.command}: {e}", file=sys.stderr)
        return RulesError.exit_code
    except WarehouseError as e:
        print(f"nev-battery {args.command}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
