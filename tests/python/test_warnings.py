"""Early warning and fault association on a small fault-rich simulated fleet (CI-sized; the
200-vehicle x 365-day figures are in the README): the warnings against the simulator's fault
truth with looser bounds, one warning per vehicle and cause, the BMS baseline, and the
association model's treatment of alarms the simulator makes independent."""

from __future__ import annotations

import duckdb
import pytest
from test_warehouse import q, run_cli, wh_env

from nev_battery.evaluate import INDEPENDENT_ALARMS, evaluate_warnings
from nev_battery.simulate import SimConfig, simulate

# 12 faults: two or three of each type
FLEET = SimConfig(vehicles=40, days=45, seed=5, fault_share=0.3)


@pytest.fixture(scope="module")
def warned(tmp_path_factory):
    root = tmp_path_factory.mktemp("warn")
    simulate(FLEET, root / "landing", root / "truth")
    env = wh_env(root, "warn.duckdb")
    run_cli(["build", "--full-refresh"], env)  # data tests included
    with duckdb.connect(str(root / "warn.duckdb"), read_only=True) as con:
        rep = evaluate_warnings(con, root / "truth")
    print("\n" + rep.format())
    return root, rep


def test_warnings_against_fault_truth(warned):
    _, rep = warned
    assert rep.hazard_recall_level2 >= 0.8
    assert rep.hazard_median_lead_h >= 24
    assert rep.thermal_events > 0 and rep.thermal_events_level3_before == rep.thermal_events
    assert rep.false_level2_per_1000 <= 2.0
    assert rep.auroc >= 0.85
    # better than the BMS's own alarms on healthy vehicles
    assert rep.false_level2_per_1000 < rep.bms_false_level2_per_1000


def test_one_warning_per_vehicle_and_cause_at_a_time(warned):
    root, _ = warned
    db = root / "warn.duckdb"
    # merged: no two warnings of a vehicle and cause overlap or follow within the merge gap
    (close,) = q(db, """
        select count(*) from (
            select start_time, lag(end_time) over (partition by vin, warning_type order by start_time) as prev_end
            from ads.ads_battery_warning)
        where start_time <= prev_end + interval 24 hour""")[0]
    assert close == 0
    # far fewer warnings than the rule episodes and detector days behind them
    (warnings, parts) = q(db, "select count(*), sum(episode_count) from ads.ads_battery_warning")[0]
    assert 0 < warnings < parts
    # every warning names its evidence; cell and probe detectors name the element
    (unnamed,) = q(db, """select count(*) from ads.ads_battery_warning
        where evidence is null or (warning_type in ('cell_voltage_outlier', 'probe_hot')
                                   and evidence not similar to '(cell|probe) [0-9]+:.*')""")[0]
    assert unnamed == 0


def test_association_recovers_chains_and_not_independent_alarms(warned):
    root, rep = warned
    a = rep.association
    assert len(a) > 0
    # nothing between the non-battery alarms the simulator draws independently
    indep = a[a.antecedent.isin(INDEPENDENT_ALARMS) & a.consequent.isin(INDEPENDENT_ALARMS)]
    assert (indep.lift <= 2).all()
    # a warning of a failing cell goes with the BMS's consistency alarm
    pair = a[(a.antecedent == "alarm:poor_cell_consistency")
             & a.consequent.str.startswith("warning:")]
    assert len(pair) > 0 and (pair.lift > 2).all()
    # the risk score is defined on every vehicle-day of the SOH features
    db = root / "warn.duckdb"
    assert (q(db, "select count(*) from ads.ads_vehicle_risk_daily")
            == q(db, "select count(*) from dwd.dwd_vehicle_soh_feature"))
