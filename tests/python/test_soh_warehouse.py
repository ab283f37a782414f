"""SOH in the warehouse on a small simulated fleet (CI-sized; the 200-vehicle x 365-day
figures are in the README): accuracy on held-out vehicles against the simulator's true SOH
with looser bounds, the daily run applying the stored model without retraining, a retrain on
the same data reproducing the same version."""

from __future__ import annotations

import shutil

import duckdb
import pytest
from test_warehouse import q, run_cli, wh_env

from nev_battery.evaluate import evaluate_soh
from nev_battery.simulate import SimConfig, simulate

FLEET = SimConfig(vehicles=40, days=60, seed=3)


@pytest.fixture(scope="module")
def soh_built(tmp_path_factory):
    root = tmp_path_factory.mktemp("soh")
    simulate(FLEET, root / "landing", root / "truth")
    env = wh_env(root, "soh.duckdb")
    run_cli(["build", "--full-refresh"], env)  # data tests included
    return root, env


def test_soh_against_truth_on_held_out_vehicles(soh_built):
    root, _ = soh_built
    with duckdb.connect(str(root / "soh.duckdb"), read_only=True) as con:
        rep = evaluate_soh(con, root / "truth")
    print("\n" + rep.format())
    assert rep.holdout_vehicles >= 8
    # every held-out vehicle-day from the vehicle's first day has an estimate
    assert rep.vehicle_days == rep.true_vehicle_days > 0
    m = rep.row("model", "all days")
    assert m.rmse <= 1.5 and m.max_abs <= 5.0 and m.within_2pp >= 0.85
    raw = rep.row("raw observation", "days with an observation")
    assert rep.row("model", "days with an observation").rmse < raw.rmse
    # 10 hold-out vehicles x 55 days: the coverage of so few vehicles moves by +-10 points
    # from seed to seed (the 200-vehicle figure is 89.8 %)
    assert 0.65 <= rep.coverage90 <= 0.99


def test_capacity_observations_reconcile_with_eligible_segments(soh_built):
    root, _ = soh_built
    db = root / "soh.duckdb"
    # every SOH-eligible segment, and every one missing only get_charge's SOC window or ΔSOC
    # threshold with at least soh_label_min_delta_soc (15) points, gives a charge label
    (eligible,) = q(db, "select count(*) from dwd.dwd_charge_segment where is_soh_eligible")[0]
    (wider,) = q(db, """select count(*) from dwd.dwd_charge_segment
        where ineligible_reason in ('start_soc_high', 'end_soc_low', 'delta_soc_small')
          and delta_soc_pct >= 15""")[0]
    (observed,) = q(db, """select count(*) from dwd.dwd_capacity_observation
        where observation_type = 'charge'""")[0]
    assert observed == eligible + wider and eligible > 0 and wider > 0
    # discharge windows: trips of one day between two charges, >= 15 points of SOC; their
    # measured Ah is the trips' net Ah (summed in fixed point, 1e-6 Ah a trip), and no charge
    # segment starts inside a window
    rows = q(db, """
        with w as (select * from dwd.dwd_capacity_observation where observation_type = 'discharge'),
        t as (
            select w.vin, w.start_time, w.measured_ah, w.run_count, w.delta_soc_pct,
                   sum(t.ah_out - t.ah_regen) as trips_ah, count(*) as trips
            from w join dwd.dwd_drive_trip as t
              on t.vin = w.vin and t.start_time between w.start_time and w.end_time
            group by all
        )
        select count(*),
               sum(case when abs(trips_ah - measured_ah) > 1e-4 or trips <> run_count then 1 else 0 end),
               min(delta_soc_pct),
               (select count(*) from w join dwd.dwd_charge_segment as s
                  on s.vin = w.vin and s.start_time between w.start_time and w.end_time)
        from t""")
    n_windows, mismatched, min_dsoc, charges_inside = rows[0]
    (n_dis,) = q(db, """select count(*) from dwd.dwd_capacity_observation
        where observation_type = 'discharge'""")[0]
    assert n_windows == n_dis > 0
    assert mismatched == 0 and min_dsoc >= 15 and charges_inside == 0
    # every vehicle-day of the features has a daily SOH, and ADS has them all
    (feat,) = q(db, "select count(*) from dwd.dwd_vehicle_soh_feature")[0]
    (soh,) = q(db, "select count(*) from dwd.dwd_vehicle_soh")[0]
    (ads,) = q(db, "select count(*) from ads.ads_vehicle_soh")[0]
    assert feat == soh == ads > 0


def test_daily_run_applies_the_stored_model_and_retrain_is_reproducible(soh_built, tmp_path):
    root, _ = soh_built
    work = tmp_path / "daily"
    work.mkdir()
    shutil.copy(root / "soh.duckdb", work / "wh.duckdb")
    env = wh_env(root, "unused.duckdb")
    env.update(NEV_DUCKDB_PATH=str(work / "wh.duckdb"), DBT_TARGET_PATH=str(work / "target"))
    db = work / "wh.duckdb"
    before = q(db, "select model_version from dwd.dwd_soh_model")
    assert len(before) == 1
    (last,) = q(db, "select max(date) from dwd.dwd_vehicle_soh")[0]
    n_before = q(db, "select count(*) from ads.ads_vehicle_soh")[0][0]
    run_cli(["daily", "--date", str(last), "--skip-tests"], env)
    assert q(db, "select model_version from dwd.dwd_soh_model") == before
    assert q(db, "select distinct model_version from ads.ads_vehicle_soh") == before
    assert q(db, "select count(*) from ads.ads_vehicle_soh")[0][0] == n_before
    # retraining on the same data gives the same version, which is not stored twice
    run_cli(["build", "--select", "dwd_soh_model", "--retrain-soh"], env)
    assert q(db, "select model_version from dwd.dwd_soh_model") == before
