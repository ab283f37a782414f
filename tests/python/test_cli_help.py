"""Every command-line flag says what it does (nev-battery <command> --help), and the demo is
recent: it ends yesterday unless told otherwise, so a publish on the default TTL serves it."""

from __future__ import annotations

import argparse
from datetime import date, timedelta

from nev_battery.cli import DEMO_DAYS, build_parser, demo_start, short_error


def _undocumented(p: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[str]:
    out = []
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                out += _undocumented(sub, (*path, name))
        elif a.dest != "help" and a.help in (None, ""):
            out.append(f"nev-battery {' '.join(path)} {'/'.join(a.option_strings) or a.dest}")
    return out


def test_every_flag_has_help_text():
    assert _undocumented(build_parser()) == []


def test_demo_ends_yesterday_by_default_and_spans_its_days():
    args = build_parser().parse_args(["demo"])
    assert args.end_date == date.today() - timedelta(days=1)
    assert args.days == DEMO_DAYS
    assert demo_start(date(2026, 12, 6), 45) == date(2026, 10, 23)
    fixed = build_parser().parse_args(["demo", "--end-date", "2026-03-14", "--days", "14"])
    assert demo_start(fixed.end_date, fixed.days) == date(2026, 3, 1)


def test_a_spark_failure_is_reported_without_its_java_stack_trace():
    msg = ("model.nev_battery.ods_x: error: [PATH_NOT_FOUND] Path does not exist: file:/x\n"
           + "\n".join(f"\tat org.apache.spark.Foo.bar(Foo.scala:{i})" for i in range(190))
           + "\n\t... 42 more")
    assert short_error(msg) == "model.nev_battery.ods_x: error: [PATH_NOT_FOUND] Path does not exist: file:/x"
