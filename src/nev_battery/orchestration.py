"""The offline jobs on a scheduler: Dagster definitions ``defs`` (with dagster-webserver installed:
``dagster dev -m nev_battery.orchestration``; docs/operations.md).

Jobs (each op calls the project's own functions: warehouse.build / daily_batch /
backfill_batch and the ``nev-battery export`` / ``publish`` commands, so every run goes through
the same guards as the CLI: the landing guard, the rules validation, the warehouse lock):

* ``daily``     partitioned by day, scheduled 02:30 for the day before: ingest close (the day's
  landing partition is there) -> the ``daily`` run of that day, its look-back and every late
  partition -> export (and publish, NEV_PUBLISH_TARGET) of the months those days belong to;
* ``weekly``    partitioned by week (Monday), scheduled Monday 04:00 for the week before: SOH by
  window and the fleet reports rebuilt, the fleet report written to NEV_REPORTS_DIR;
* ``monthly``   partitioned by month, scheduled the 1st 05:00 for the month before: SOH retrain
  (a new registry version, with the registry's data tests), export and publish of the month,
  the serving TTL applied;
* ``backfill``  a custom range (run config start / end): one rebuild of the range, then export
  and publish of its months.

Every op is idempotent (it replaces whole days or months) and retried (RetryPolicy: 3 retries,
NEV_RETRY_DELAY_S apart, exponential): a busy warehouse, a partition still arriving, a
ClickHouse server restarting. A rule row refused (exit code 2 on the CLI) fails at once, as no
retry can fix it. Failures are Dagster run failures (the UI's runs page, the op's error naming
the day and the remedy), and each is also appended to NEV_FAILURE_LOG by a run-failure sensor.
"""


import os
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from . import cli
from .rules import RulesError
from .warehouse import (
    BuildResult,
    WarehouseError,
    backfill_batch,
    build,
    check_landing_root,
    connect,
    daily_batch,
    duckdb_path,
    format_summary,
    landing_root,
    summary,
    warehouse_lock,
)

START_DATE = os.environ.get("NEV_SCHEDULE_START", "2026-01-01")
# the weekly reports: rebuilt whole from the day-incremental layers
WEEKLY_MODELS = ("ads_soh_by_window ads_soh_by_condition ads_fleet_soh_percentile "
                 "ads_soh_watchlist ads_warning_rule_firing_rate ads_fault_association")


def _retry() -> dg.RetryPolicy:
    return dg.RetryPolicy(max_retries=int(os.environ.get("NEV_RETRIES", "3")),
                          delay=float(os.environ.get("NEV_RETRY_DELAY_S", "60")),
                          backoff=dg.Backoff.EXPONENTIAL)


def _lookback_days() -> int:
    return int(os.environ.get("NEV_DAILY_LOOKBACK_DAYS", "0"))


def _publish_target() -> str | None:
    return os.environ.get("NEV_PUBLISH_TARGET") or None


def _guarded(fn):
    """Run fn; a refused rule set stops the op without retries (no retry can fix a bad row),
    other errors are raised for the retry policy."""
    try:
        return fn()
    except RulesError as e:
        raise dg.Failure(description=str(e), allow_retries=False) from None


def _skip_tests() -> list[str]:
    """NEV_JOB_SKIP_TESTS=1: models only, no data tests (as --skip-tests); the SOH retrain keeps
    the registry's tests whatever it says."""
    if os.environ.get("NEV_JOB_SKIP_TESTS", "").lower() in ("1", "true", "yes"):
        return ["--exclude-resource-type", "test"]
    return []


def _build(context: dg.OpExecutionContext, what: str, **kwargs) -> BuildResult:
    kwargs.setdefault("extra_args", _skip_tests())

    def run():
        with warehouse_lock(f"dagster {context.run.job_name} {what}"):
            return build(**kwargs)

    res = _guarded(run)
    for note in res.notes:
        context.log.info(note)
    if not res.ok:
        raise dg.Failure(description=f"{what}: dbt run failed:\n" + "\n".join(res.failures),
                         metadata={"failures": "\n".join(res.failures)})
    context.add_output_metadata({"seconds": round(res.seconds, 1),
                                 "days": ", ".join(res.batch_dates or ["all"])})
    return res


def _cli(context: dg.OpExecutionContext, args: list[str]) -> None:
    """A nev-battery command (it takes the warehouse lock itself); non-zero exit = failure."""
    context.log.info("nev-battery " + " ".join(args))
    rc = _guarded(lambda: cli.main(args))
    if rc:
        raise dg.Failure(description=f"nev-battery {' '.join(args)} exited {rc}",
                         allow_retries=rc != RulesError.exit_code)


def _export_publish(context: dg.OpExecutionContext, months: list[str]) -> list[str]:
    if not months:
        return months
    joined = ",".join(months)
    _cli(context, ["export", "--months", joined])
    target = _publish_target()
    if target:
        _cli(context, ["publish", "--months", joined, "--target", target, "--skip-export"])
    else:
        context.log.info("NEV_PUBLISH_TARGET not set: exported to the lake, not published")
    return months


def _months(days: list[str]) -> list[str]:
    return sorted({d[:7] for d in days})


# --- daily ------------------------------------------------------------------------------------

daily_partitions = dg.DailyPartitionsDefinition(start_date=START_DATE)


@dg.op(retry_policy=_retry())
def ingest_close(context: dg.OpExecutionContext) -> str:
    """The day's landing partition is closed: the ingest wrote it (at least one file). Until
    then the op fails and is retried; the run fails visibly once the retries are spent. With
    NEV_INGEST_CATCHUP=1 the op first runs the Kafka ingest until the topic is quiet."""
    day = context.partition_key
    root = landing_root()
    if os.environ.get("NEV_INGEST_CATCHUP", "").lower() in ("1", "true", "yes"):
        # no ingest service running: catch up with Kafka here (`nev-battery ingest`, exactly
        # once), then stop once the topic is quiet for NEV_INGEST_IDLE_S seconds
        _cli(context, ["ingest", "--landing", str(root), "--idle-exit",
                       os.environ.get("NEV_INGEST_IDLE_S", "30")])
    check_landing_root(root)
    part = root / "gbt32960_realtime" / f"dt={day}"
    if not part.is_dir() or not any(p.is_file() for p in part.rglob("*")):
        raise WarehouseError(f"landing partition {part} is not there yet: the ingest of {day} "
                             "has not closed (retried; rerun the day's partition once it has)")
    return day


@dg.op(retry_policy=_retry())
def daily_run(context: dg.OpExecutionContext, day: str) -> list[str]:
    """`nev-battery daily`: the day, its look-back and every partition with a new or changed
    file since the last successful run (late files, re-sends)."""
    batch = _guarded(lambda: daily_batch(date.fromisoformat(day), _lookback_days()))
    context.log.info(f"daily run for {day}: rebuilding {', '.join(batch)}")
    _build(context, f"daily {day}", batch_dates=batch)
    return batch


@dg.op(retry_policy=_retry())
def publish_changed_months(context: dg.OpExecutionContext, batch: list[str]) -> list[str]:
    """Export (and publish) the months of the rebuilt days."""
    return _export_publish(context, _months(batch))


@dg.job(partitions_def=daily_partitions,
        description="ingest close -> daily run (look-back, late partitions) -> export and "
                    "publish the changed months")
def daily():
    publish_changed_months(daily_run(ingest_close()))


# --- weekly -----------------------------------------------------------------------------------

weekly_partitions = dg.WeeklyPartitionsDefinition(start_date=START_DATE, day_offset=1)


def reports_dir() -> Path:
    return Path(os.environ.get("NEV_REPORTS_DIR", duckdb_path().parent / "reports"))


@dg.op(retry_policy=_retry())
def weekly_reports(context: dg.OpExecutionContext) -> str:
    """SOH by window and the fleet reports rebuilt from the warehouse, and the fleet report of
    the week written to NEV_REPORTS_DIR/weekly-<monday>.txt."""
    week = context.partition_key
    _build(context, f"weekly {week}", select=WEEKLY_MODELS)
    with connect() as con:
        text = format_summary(summary(con))
    out = reports_dir() / f"weekly-{week}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"fleet report, week of {week}\n{text}\n")
    context.add_output_metadata({"report": str(out)})
    return str(out)


@dg.job(partitions_def=weekly_partitions,
        description="SOH by window and the fleet reports, the week's fleet report written")
def weekly():
    weekly_reports()


# --- monthly ----------------------------------------------------------------------------------

monthly_partitions = dg.MonthlyPartitionsDefinition(start_date=START_DATE)


@dg.op(retry_policy=_retry())
def soh_retrain(context: dg.OpExecutionContext) -> str:
    """A new SOH model version trained on everything up to the month's end (var soh_retrain
    true) with the registry's checks (the data tests of dwd_soh_model and what it feeds); the
    registry appends a version only when the fitted model is new."""
    month = context.partition_key[:7]
    first = date.fromisoformat(context.partition_key)
    last = (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    _build(context, f"monthly {month} SOH retrain", select="dwd_soh_model+",
           batch_dates=[str(last)], extra_vars={"soh_retrain": True}, extra_args=[])
    with connect() as con:
        rows = con.execute("select count(*), max(model_version) from dwd.dwd_soh_model"
                           ).fetchall()[0]
    context.log.info(f"SOH registry: {rows[0]} version(s), latest {rows[1]}")
    context.add_output_metadata({"versions": int(rows[0]), "latest": str(rows[1])})
    return month


@dg.op(retry_policy=_retry())
def month_publish(context: dg.OpExecutionContext, month: str) -> str:
    _export_publish(context, [month])
    return month


@dg.op(retry_policy=_retry())
def serving_ttl(context: dg.OpExecutionContext, month: str) -> None:
    """Apply the served tables' TTL now (ALTER TABLE ... MATERIALIZE TTL: rows older than
    serving_ttl_months leave at once, not at the next merge)."""
    target = _publish_target()
    if not target:
        context.log.info("NEV_PUBLISH_TARGET not set: no served tables, no TTL to apply")
        return
    from .warehouse import run_dbt

    ok, failures = run_dbt(["run-operation", "serving_materialize_ttl"], target)
    if not ok:
        raise dg.Failure(description="serving TTL: " + "\n".join(failures))


@dg.job(partitions_def=monthly_partitions,
        description="SOH retrain with the registry's checks -> month export and publish -> TTL")
def monthly():
    serving_ttl(month_publish(soh_retrain()))


# --- custom-range back-fill -------------------------------------------------------------------

class BackfillConfig(dg.Config):
    start: str  # YYYY-MM-DD
    end: str    # YYYY-MM-DD, >= start


@dg.op(retry_policy=_retry())
def backfill_range(context: dg.OpExecutionContext, config: BackfillConfig) -> list[str]:
    start, end = date.fromisoformat(config.start), date.fromisoformat(config.end)
    if end < start:
        raise dg.Failure(description=f"backfill: end {end} is before start {start}",
                         allow_retries=False)
    batch = backfill_batch(start, end)
    _build(context, f"backfill {start}..{end}", batch_dates=batch)
    return batch


@dg.job(description="rebuild a date range (run config start / end), then export and publish "
                    "its months")
def backfill():
    publish_changed_months(backfill_range())


# --- schedules, failure log -------------------------------------------------------------------

daily_schedule = dg.build_schedule_from_partitioned_job(daily, hour_of_day=2, minute_of_hour=30)
weekly_schedule = dg.build_schedule_from_partitioned_job(weekly, hour_of_day=4)
monthly_schedule = dg.build_schedule_from_partitioned_job(monthly, hour_of_day=5)


@dg.run_failure_sensor
def failure_log(context: dg.RunFailureSensorContext) -> None:
    """Every failed run, one line in NEV_FAILURE_LOG (default beside the warehouse), for the
    operators' alerting to pick up."""
    path = Path(os.environ.get("NEV_FAILURE_LOG", duckdb_path().parent / "job-failures.log"))
    path.parent.mkdir(parents=True, exist_ok=True)
    run = context.dagster_run
    with path.open("a") as f:
        f.write(f"{run.job_name} {run.tags.get('dagster/partition', '-')} {run.run_id}: "
                f"{context.failure_event.message}\n")


defs = dg.Definitions(
    jobs=[daily, weekly, monthly, backfill],
    schedules=[daily_schedule, weekly_schedule, monthly_schedule],
    sensors=[failure_log],
)
