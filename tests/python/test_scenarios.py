"""SOH and warnings on fleets unlike the one the models were designed on (CI-sized; the 40 x 90
figures per scenario are in the README): small fleets of the `hostile` scenario (every BMS and
pack variant at once: lagging capacity belief, OCV resets, top-up hold, current-sensor gain
and offset, standby load, cell spread, weak cells, probe offsets, milder internal shorts) and of
the `baseline`, each built and measured against its own truth: the warnings with looser bounds
than the README's targets (a small fleet has few faults), SOH at the targets on the baseline and,
where the targets are not reached yet (hostile), as a guard against getting worse."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from nev_battery.scenario_eval import build_fleet, evaluate_fleet, simulate_fleet

VEHICLES, DAYS, SEED, FAULT_SHARE = 30, 60, 17, 0.3


@pytest.fixture(scope="module", params=["baseline", "hostile"])
def scenario_fleet(request, tmp_path_factory):
    fleet = tmp_path_factory.mktemp(request.param)
    simulate_fleet(fleet, request.param, VEHICLES, DAYS, SEED, FAULT_SHARE)
    build_fleet(fleet)
    res = evaluate_fleet(fleet)
    print("\n" + "\n".join(f"{k}: {v}" for k, v in res.items()))
    assert res["scenario"] == request.param
    res["healthy_soh"] = healthy_soh(fleet)
    res["label_bias"] = label_bias(fleet)
    print(f"label mean error by kind, pp: {res['label_bias']}")
    print(f"SOH on vehicles without a fault: {res['healthy_soh']}")
    return res


def healthy_soh(fleet: Path) -> dict:
    """SOH error over every day of the vehicles without an injected fault: a fault-rich small
    fleet's faults (a cell fading 15 pp in two months) would otherwise set the figures, and the
    SOH targets are about ageing packs."""
    truth = pd.read_parquet(fleet / "truth" / "vehicle_daily.parquet")
    faulty = set(pd.read_parquet(fleet / "truth" / "fault_events.parquet")["vin"])
    with duckdb.connect(str(fleet / "wh.duckdb"), read_only=True) as con:
        soh = con.execute("select vin, as_of_date as date, soh_pct, soh_lower_pct, soh_upper_pct "
                          "from ads.ads_vehicle_soh").df()
    truth["date"] = pd.to_datetime(truth["date"])
    soh["date"] = pd.to_datetime(soh["date"])
    m = soh.merge(truth[["vin", "date", "true_soh_pct"]], on=["vin", "date"])
    m = m[~m["vin"].isin(faulty)]
    err = m["soh_pct"] - m["true_soh_pct"]
    return {"vehicles": m["vin"].nunique(), "days": len(m),
            "rmse": float(np.sqrt((err ** 2).mean())), "max": float(err.abs().max()),
            "within_2pp": float((err.abs() <= 2).mean()),
            "coverage90": float(m["true_soh_pct"].between(m["soh_lower_pct"],
                                                           m["soh_upper_pct"]).mean())}


def label_bias(fleet: Path) -> dict:
    """Mean error of the capacity labels against the true SOH of their day, per label kind."""
    truth = pd.read_parquet(fleet / "truth" / "vehicle_daily.parquet")
    truth["date"] = pd.to_datetime(truth["date"])
    with duckdb.connect(str(fleet / "wh.duckdb"), read_only=True) as con:
        obs = con.execute("select vin, start_date as date, observation_type, soh_obs_pct "
                          "from dwd.dwd_capacity_observation "
                          "where capacity_reject_reason is null").df()
    obs["date"] = pd.to_datetime(obs["date"])
    m = obs.merge(truth[["vin", "date", "true_soh_pct"]], on=["vin", "date"])
    err = m["soh_obs_pct"] - m["true_soh_pct"]
    return {k: {"n": len(g), "mean": float(g.mean())}
            for k, g in err.groupby(m["observation_type"])}


def test_ocv_labels_do_not_read_the_bms(scenario_fleet):
    """OCV-anchored labels (no BMS SOC in them) stay near the truth whatever the BMS does, where
    the labels over the BMS's ΔSOC read its lagging capacity belief on the hostile fleet."""
    b = scenario_fleet["label_bias"]
    assert b["ocv"]["n"] >= 10 * VEHICLES
    assert abs(b["ocv"]["mean"]) <= 1.0
    if scenario_fleet["scenario"] == "hostile":
        assert b["charge"]["mean"] >= 1.5


def test_warnings_hold_on_the_scenario(scenario_fleet):
    r = scenario_fleet
    assert r["false_l2_per_1000"] <= 2.0
    assert r["hazard_recall"] >= 0.8
    assert r["hazard_lead_h"] >= 24
    assert r["auroc"] >= 0.9


def test_soh_holds_on_the_scenario(scenario_fleet):
    h = scenario_fleet["healthy_soh"]
    assert h["vehicles"] >= 15 and h["days"] >= 15 * 50
    if scenario_fleet["scenario"] == "baseline":
        assert h["rmse"] <= 1.0
        assert h["max"] <= 3.0
        assert h["within_2pp"] >= 0.95
        assert 0.85 <= h["coverage90"] <= 0.99
    else:
        # not at the targets yet (issue 14: every Ah/dSOC label reads a lagging BMS's capacity
        # belief; measured 2.95 pp RMSE, 7.7 pp max here): a guard against getting worse
        assert h["rmse"] <= 3.5
        assert h["max"] <= 9.0
