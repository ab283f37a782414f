"""The demo fleet's options (nev-battery demo): fast-ageing packs drawn from an RNG stream of
their own, so a seed's fleet (vehicles, models, ages) is unchanged; drives and charges that end by the last
day's midnight, so the last day is a whole one and nothing follows it."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from nev_battery.simulate import SimConfig, fast_ageing_wear, simulate

START = date(2026, 11, 1)


@pytest.fixture(scope="module")
def fleets(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_fleet")
    out = {}
    for name, kw in {"plain": {}, "demo": {"fast_ageing": 2, "end_at_horizon": True}}.items():
        cfg = SimConfig(vehicles=12, days=4, seed=9, start_date=START, **kw)
        simulate(cfg, root / name / "landing", root / name / "truth")
        out[name] = root / name
    return out


def test_fast_ageing_wears_only_the_chosen_vehicles():
    wear = fast_ageing_wear(SimConfig(vehicles=50, seed=7, fast_ageing=3), 50)
    assert (wear > 1).sum() == 3 and wear.max() <= 12 and (wear[wear > 1] >= 6).all()
    assert (fast_ageing_wear(SimConfig(vehicles=50, seed=7), 50) == 1).all()


def test_the_demo_options_keep_the_fleet_and_age_two_packs(fleets):
    plain = pd.read_parquet(fleets["plain"] / "landing" / "vehicle_master")
    demo = pd.read_parquet(fleets["demo"] / "landing" / "vehicle_master")
    pd.testing.assert_frame_equal(plain, demo)  # the same vehicles, models, ages
    cap = {k: pd.read_parquet(v / "truth" / "vehicle_daily.parquet").groupby("vin")
           .true_capacity_ah.first() for k, v in fleets.items()}
    drop = cap["plain"] - cap["demo"]
    assert (drop > 5).sum() == 2  # two packs aged 6-12 times faster, Ah lost
    # the others as they were (their activities may shift by a draw: the planning is one
    # vectorised stream over the fleet)
    assert (drop[drop <= 5].abs() < 0.01).all()


def test_nothing_is_driven_or_charged_after_the_last_day(fleets):
    end = np.datetime64(START, "ms") + np.timedelta64(4, "D")
    s = pd.read_parquet(fleets["demo"] / "truth" / "charge_sessions.parquet")
    assert len(s) > 0
    assert (s.end_time.to_numpy(dtype="datetime64[ms]") <= end).all()
