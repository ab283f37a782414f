"""nev_battery.soh: the vectorized posterior against a direct computation, the SOC-drift design,
the hold-out split, and train/apply on synthetic labels with a known true SOH."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from nev_battery.soh import (
    OUTPUT_COLUMNS,
    SohSettings,
    apply,
    attach_features,
    drift_design,
    dumps,
    is_holdout,
    loads,
    posterior_at,
    train,
)


def _direct_posterior(r, w, H, days, q_day, half_life, prior_var, strict):
    """Reference: the Gaussian posterior written out with matrices, one query at a time (test
    code, not a per-row path of the warehouse)."""
    lam = np.log(2) / half_life
    sel = days < q_day if strict else days <= q_day
    P = np.diag(1 / np.asarray(prior_var, float))
    h = np.zeros(H.shape[1])
    for ri, wi, zi, di in zip(r[sel], w[sel], H[sel], days[sel], strict=True):
        k = wi * np.exp(-lam * (q_day - di))
        P += k * np.outer(zi, zi)
        h += k * zi * ri
    cov = np.linalg.inv(P)
    return cov @ h, cov


@pytest.mark.parametrize("strict", [False, True])
def test_posterior_matches_direct_computation(strict):
    rng = np.random.default_rng(5)
    vins = np.repeat(["A", "B", "C"], [7, 1, 12])
    days = np.concatenate([np.sort(rng.integers(0, 200, 7)), [50],
                           np.sort(rng.integers(0, 400, 12))]).astype(float)
    r = rng.normal(0, 1.5, vins.size)
    w = rng.uniform(0.2, 2.0, vins.size)
    # level, SOC gain, discharge offset: discharge windows on some labels only
    H = np.column_stack([np.ones(vins.size), rng.normal(0, 1.0, vins.size),
                         (rng.random(vins.size) < 0.4).astype(float)])
    prior = np.array([2.0, 0.5, 0.8])
    q_vin = np.array(["A", "A", "B", "C", "C", "D", "B"], dtype=object)
    q_day = np.array([0.0, 150, 50, 399, 10, 20, 49])
    post = posterior_at(vins.astype(object), days, r, w, H, q_vin, q_day, 60.0, prior,
                        strict=strict)
    for i, (qv, qd) in enumerate(zip(q_vin, q_day, strict=True)):
        m = vins == qv
        mean, cov = _direct_posterior(r[m], w[m], H[m], days[m], qd, 60.0, prior, strict)
        np.testing.assert_allclose(post["mean"][i], mean, atol=1e-9)
        np.testing.assert_allclose(post["cov"][i], cov, rtol=1e-9, atol=1e-12)
    # a vehicle without observations keeps the prior
    assert (post["mean"][5] == 0).all() and post["cov"][5, 0, 0] == pytest.approx(2.0)


def test_drift_design_signs():
    obs = pd.DataFrame({"is_full_charge": [False, True, True, False, False],
                        "efc_since_full_charge": [0.7, 0.5, np.nan, 2.0, 0.3],
                        "delta_soc_pct": [50.0, 60.0, 60.0, 40.0, 30.0],
                        "observation_type": ["charge"] * 4 + ["discharge"]})
    u, unknown = drift_design(obs, np.full(5, 90.0), max_efc=1.0)
    # a partial charge: the biased counter measures its ΔSOC, the label comes out low for g > 0
    assert u[0] == pytest.approx(-0.45)
    # a full charge starts from a SOC that drifted by g x (charges since the last full charge +
    # the discharge down to its start): the label comes out high
    assert u[1] == pytest.approx(90 * (0.5 + 60 / 200) / 60)
    # no full charge seen yet, or too long since one: drift not modelled, noise of its kind
    assert unknown.tolist() == [0, 0, 2, 1, 0] and u[2] == 0 and u[3] == 0
    # a discharge window: the same counter, the throughput growing while the SOC falls
    assert u[4] == pytest.approx(+0.45)


def test_holdout_split_is_stable_and_near_its_share():
    vins = np.array([f"LNBAS7C{i:010d}" for i in range(2000)], dtype=object)
    h = is_holdout(vins, 0.3)
    assert 0.27 < h.mean() < 0.33
    assert (is_holdout(vins[::-1], 0.3) == h[::-1]).all()


def _synthetic_fleet(n_vehicles=60, days=240, seed=0):
    """Vehicles whose true SOH fades with age and cycles; labels carry 1 % SOC quantisation
    noise and a per-vehicle BMS counter gain error, as field labels do, and a third of them are
    discharge windows with a per-vehicle offset of their own (sd 1 pp)."""
    rng = np.random.default_rng(seed)
    start = date(2026, 1, 1)
    feats, obs, truth = [], [], []
    for v in range(n_vehicles):
        vin = f"SYN{v:014d}"
        age0 = rng.integers(30, 1000)
        km_day = rng.uniform(30, 200)
        bol = rng.uniform(100, 103.5)
        gain = rng.normal(0, 1.5)
        cal = rng.uniform(0.8, 1.2)
        d_off = rng.normal(0, 1.0)
        d = np.arange(days)
        age = age0 + d
        efc = (age * km_day * 0.14 / 55) / 2
        soh = bol - cal * 0.04 * age**0.75 - 0.25 * np.sqrt(efc)
        f = pd.DataFrame({"vin": vin, "date": [start + timedelta(days=int(i)) for i in d],
                          "rated_capacity_ah": 150.0, "chemistry": "NCM",
                          "vehicle_model": "EVA-N60", "days_in_service": age,
                          "odometer_km": age * km_day, "km_per_day": km_day,
                          "equivalent_full_cycles": efc, "usage_behavior_score": 80.0,
                          "lifetime_mean_temp_c": 20.0, "fast_charge_share": 0.5,
                          "high_c_rate_share": 0.1, "high_temp_share": 0.0,
                          "deep_discharge_share": 0.0, "high_soc_rest_share": 0.1})
        feats.append(f)
        truth.append(pd.DataFrame({"vin": vin, "date": f["date"], "true": soh}))
        n_obs = rng.integers(days // 10, days // 2)
        od = np.sort(rng.choice(d, n_obs))
        kind = rng.random(n_obs)
        full = kind < 0.3
        dis = kind > 0.65
        dsoc = np.where(full, rng.uniform(40, 80, n_obs), rng.uniform(30, 60, n_obs))
        efc_sf = rng.uniform(0.0, 0.6, n_obs)  # charge throughput since the last full charge
        true_dsoc = dsoc
        # a full charge ends recalibrated and starts from a SOC drifted by g x (that throughput
        # + the discharge down to its start); a partial one is counted by the biased counter
        # ... and a discharge window by the same counter while the throughput grows
        meas_dsoc = np.where(full, true_dsoc - gain * (efc_sf + true_dsoc / 200),
                             true_dsoc * (1 + np.where(dis, -gain, gain) / 200))
        meas_dsoc = meas_dsoc + rng.uniform(-1, 1, n_obs)
        y = soh[od] * true_dsoc / meas_dsoc + np.where(dis, d_off, 0.0)
        obs.append(pd.DataFrame({
            "vin": vin, "start_time": [pd.Timestamp(start + timedelta(days=int(i))) for i in od],
            "start_date": [start + timedelta(days=int(i)) for i in od],
            "observation_type": np.where(dis, "discharge", "charge"),
            "charger_type": np.where(dis, "none", "DC"), "delta_soc_pct": np.round(meas_dsoc),
            "is_full_charge": full,
            "efc_since_full_charge": efc_sf, "mean_temp_c": 25.0, "mean_c_rate": 0.3,
            "soh_obs_pct": y, "capacity_reject_reason": None}))
    feats = pd.concat(feats, ignore_index=True)
    obs = pd.concat(obs, ignore_index=True)
    return feats, attach_features(obs, feats), pd.concat(truth, ignore_index=True)


def test_train_and_apply_on_synthetic_labels():
    feats, obs, truth = _synthetic_fleet()
    settings = SohSettings(holdout_share=0.3)
    model = train(obs, settings, trained_through="2026-08-28")
    assert model is not None and model.version.startswith("soh-2026-08-28-")
    assert loads(dumps(model)).version == model.version
    # the per-vehicle offset of discharge windows is learnt (sd 1 pp in this fleet)
    assert 0.5 <= model.metrics["discharge_offset_sd_pp"] <= 1.6
    out = apply(model, feats, obs, settings)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert len(out) == len(feats) and out.soh_pct.notna().all()
    m = out.merge(truth, on=["vin", "date"])
    m = m[is_holdout(m.vin, 0.3)]
    err = m.soh_pct - m["true"]
    raw = (m.raw_observation_pct - m["true"]).dropna()
    rmse = float(np.sqrt((err**2).mean()))
    assert rmse < float(np.sqrt((raw**2).mean())), "the model must beat the raw labels"
    assert rmse < 1.5
    inside = ((m["true"] >= m.soh_lower_pct) & (m["true"] <= m.soh_upper_pct)).mean()
    assert 0.70 <= inside <= 0.99
    # days before a vehicle's first label: no observations behind the estimate
    first = obs.groupby("vin").start_date.min()
    early = out[out.date < out.vin.map(first)]
    assert (early.observation_count == 0).all() and early.raw_observation_pct.isna().all()
    # a systematic SD (soh_systematic_sd_pp) widens the interval in quadrature, nothing else
    wide = apply(model, feats, obs, SohSettings(holdout_share=0.3, systematic_sd_pp=1.0))
    np.testing.assert_allclose(wide.soh_pct, out.soh_pct)
    from nev_battery.soh import Z90
    half = (wide.soh_upper_pct - wide.soh_lower_pct) / 2
    ok = (wide.soh_lower_pct > 0) & (wide.soh_upper_pct < 110)
    np.testing.assert_allclose(half[ok], Z90 * np.sqrt(out.offset_sd_pp[ok] ** 2 + 1.0))


def test_too_few_observations_trains_nothing():
    _, obs, _ = _synthetic_fleet(n_vehicles=5, days=30)
    assert train(obs, SohSettings(min_training_vehicles=10), "2026-01-30") is None


def test_dispersion_widens_only_vehicles_whose_labels_disagree():
    from nev_battery.soh import _dispersion

    vin = np.array(["A"] * 10 + ["B"] * 10, dtype=object)
    day = np.tile(np.arange(10, dtype=float), 2)
    z2 = np.r_[np.full(10, 0.5), np.full(10, 9.0)]  # A agrees better than its noise, B 3 sigma
    q_vin = np.array(["A", "B", "B", "C"], dtype=object)
    q_day = np.array([9.0, 0.0, 9.0, 9.0])
    f = _dispersion(vin, day, z2, q_vin, q_day, prior_n=5.0)
    assert f[0] == 1.0  # never narrower than the noise model
    assert f[1] == pytest.approx((5 + 9) / 6)  # one label seen on day 0
    assert f[2] == pytest.approx((5 + 90) / 15)
    assert f[3] == 1.0  # no labels



def _lagging_fleet(ocv_share=0.7, seed=3):
    """The synthetic fleet with BMSs that count against a capacity belief lagging the fade: every
    label the BMS's SOC enters reads the belief, (1 - tracking) x the fade (100 - true SOH)
    above the true SOH, tracking U(0.2, 0.7) per vehicle. ocv_share of the vehicles also have OCV labels (no BMS SOC
    in them: unbiased, noisier) on about one day in fifteen."""
    feats, obs, truth = _synthetic_fleet(seed=seed)
    rng = np.random.default_rng(seed + 100)
    vins = truth.vin.unique()
    tracking = pd.Series(rng.uniform(0.2, 0.7, len(vins)), index=vins)
    # the belief follows part of the fade from the rated capacity
    t = truth.assign(fade=(100.0 - truth["true"]).clip(lower=0.0))
    o = obs.merge(t.rename(columns={"date": "start_date"}), on=["vin", "start_date"])
    o["soh_obs_pct"] = o["soh_obs_pct"] + (1 - o.vin.map(tracking)) * o["fade"]
    with_ocv = vins[rng.random(len(vins)) < ocv_share]
    tv = t[t.vin.isin(with_ocv)]
    tv = tv[rng.random(len(tv)) < 1 / 15]
    ocv = pd.DataFrame({
        "vin": tv.vin, "start_time": pd.to_datetime(tv.date) + pd.Timedelta(hours=20),
        "start_date": tv.date, "observation_type": "ocv", "charger_type": "AC",
        "delta_soc_pct": rng.uniform(40, 80, len(tv)), "is_full_charge": True,
        "efc_since_full_charge": np.nan, "mean_temp_c": 25.0, "mean_c_rate": 0.15,
        "soh_obs_pct": tv["true"] + rng.normal(0, 1.5, len(tv)), "capacity_reject_reason": None})
    cols = list(obs.columns[:12])
    lab = pd.concat([o[cols], ocv[cols]], ignore_index=True)
    return feats, attach_features(lab, feats), truth


def test_ocv_labels_correct_a_lagging_capacity_belief():
    from nev_battery.soh import _is_ocv

    feats, obs, truth = _lagging_fleet()
    settings = SohSettings(holdout_share=0.3)

    def holdout_errors(o):
        model = train(o, settings, trained_through="2026-08-28")
        m = apply(model, feats, o, settings).merge(truth, on=["vin", "date"])
        m = m[is_holdout(m.vin, 0.3)]
        return model, m.soh_pct - m["true"], m

    model, err, m = holdout_errors(obs)
    _, err_bms, _ = holdout_errors(obs.loc[~_is_ocv(obs)].reset_index(drop=True))
    # BMS labels alone read the belief: the SOH comes out high by the lag
    assert err_bms.mean() > 0.7
    # with OCV labels the fleet learns what BMS labels read above them, per unit of fade
    # (mean tracking 0.45: 0.55 expected) and each anchored vehicle's own bias
    assert 0.3 <= model.metrics["bms_bias_pp_per_pp_fade"] <= 0.8
    assert model.metrics["ocv_anchored_vehicles"] >= 20
    assert abs(err.mean()) < 0.5
    assert np.sqrt((err**2).mean()) < 0.6 * np.sqrt((err_bms**2).mean())
    inside = ((m["true"] >= m.soh_lower_pct) & (m["true"] <= m.soh_upper_pct)).mean()
    assert 0.75 <= inside <= 0.99


def test_a_model_trained_before_ocv_labels_reads_bms_labels_only():
    feats, obs, _ = _lagging_fleet()
    from nev_battery.soh import _is_ocv

    bms = obs.loc[~_is_ocv(obs)].reset_index(drop=True)
    model = train(bms, SohSettings(), trained_through="2026-08-28")
    # what a pickled model of the previous release holds: no BMS-bias state, 7 conditions
    model.bms_bias = model.bms_bias_var = None
    model.correction_coef = model.correction_coef[:7]
    model.noise = model.noise[:6]
    a = apply(model, feats, obs, SohSettings())
    b = apply(model, feats, bms, SohSettings())
    pd.testing.assert_frame_equal(a, b)
