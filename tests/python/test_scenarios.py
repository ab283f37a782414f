"""SOH and warnings on fleets unlike the one the models were designed on (CI-sized; the 40 x 90
figures per scenario are in the README): small fleets of the `hostile` scenario (every BMS and
pack variant at once: lagging capacity belief, OCV resets, top-up hold, current-sensor gain
and offset, standby load, cell spread, weak cells, probe offsets, milder internal shorts) and of
the `baseline`, each built and measured against its own truth with looser bounds than the
README's targets (a small fleet has few hold-out vehicles and few faults)."""

from __future__ import annotations

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
    return res


def test_warnings_hold_on_the_scenario(scenario_fleet):
    r = scenario_fleet
    assert r["false_l2_per_1000"] <= 2.0
    assert r["hazard_recall"] >= 0.8
    assert r["hazard_lead_h"] >= 24
    assert r["auroc"] >= 0.9


def test_soh_holds_on_the_scenario(scenario_fleet):
    r = scenario_fleet
    assert r["soh_rmse"] <= 1.5
    assert r["soh_max"] <= 4.5
    assert r["soh_within_2pp"] >= 0.85
    assert 0.75 <= r["soh_coverage90"] <= 0.98
