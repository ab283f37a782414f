"""Battery state of health: a population ageing model plus each vehicle's own capacity history.

Field capacity labels (``dwd_capacity_observation``: offset-calibrated Ah over the BMS's ΔSOC)
are noisy: 1 % SOC steps, BMS SOC drift, sensor error. The SOH of a vehicle on a day is therefore
estimated in two parts, both learnt from the observations alone (the warehouse never sees a true
SOH):

1. ``f(x)``, the population model (PopulationModel): the mean of a ridge regression on a
   fade-law basis per chemistry and a ``HistGradientBoostingRegressor`` monotone decreasing in
   age, mileage and cycles, over the vehicle-day's ageing features (days in service, odometer,
   equivalent full cycles, usage-behaviour score, chemistry and model, temperature exposure,
   fast-charge share, ...): what a battery of that history typically has left.
2. the vehicle's state against ``f``: a level offset ``b`` and its BMS's SOC-counter gain error
   ``g`` (which biases partial and full charges' labels in opposite directions, drift_design),
   the Gaussian posterior from its residuals ``y_i - f(x_i)`` weighted by each label's
   precision and by recency (exponential forgetting with half-life ``H``, which lets the level
   follow a vehicle that fades faster or slower than its peers), with priors ``tau^2`` and
   ``gain_var``. A Kalman filter on a random-walk state, computed for all vehicles at once with
   per-vehicle cumulative sums (posterior_at).

A condition correction (temperature band, charger, C-rate, ΔSOC, full charge) is fitted on
within-vehicle residuals and removed from every label first: the temperature correction of the
capacity label is learnt from the fleet's data instead of assumed.

SOH = f + b, with the 90 % interval ``± 1.645·sqrt(Var(b))`` (the prior ``tau^2`` before any
label; ``tau^2`` is measured on the product of each vehicle's first two residuals, which share
what f misses but not their noise). Vehicles are split into training and hold-out by a hash of
the VIN; cross-validation inside the training vehicles is grouped by vehicle (GroupKFold).
Everything is vectorized over whole frames: no loop over vehicles or observations.
"""

from __future__ import annotations

import base64
import hashlib
import pickle
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

Z90 = 1.6448536269514722

# vehicle-day features of f (dwd_vehicle_soh_feature), and their monotone constraint
FEATURES = (
    ("chemistry", 0),
    ("vehicle_model", 0),
    ("days_in_service", -1),
    ("odometer_km", -1),
    ("km_per_day", 0),
    ("equivalent_full_cycles", -1),
    ("usage_behavior_score", 0),
    ("lifetime_mean_temp_c", 0),
    ("fast_charge_share", 0),
    ("high_c_rate_share", 0),
    ("high_temp_share", 0),
    ("deep_discharge_share", 0),
    ("high_soc_rest_share", 0),
)
CATEGORICAL = ("chemistry", "vehicle_model")
FEATURE_COLUMNS = tuple(c for c, _ in FEATURES)
# observation columns (dwd_capacity_observation) the model reads
OBSERVATION_COLUMNS = (
    "vin", "start_time", "start_date", "observation_type", "charger_type", "delta_soc_pct",
    "is_full_charge", "efc_since_full_charge", "mean_temp_c", "mean_c_rate", "soh_obs_pct",
    "capacity_reject_reason",
)
# what the application writes per vehicle-day (dwd_vehicle_soh)
OUTPUT_COLUMNS = (
    "vin", "date", "soh_pct", "soh_lower_pct", "soh_upper_pct", "capacity_ah",
    "population_soh_pct", "vehicle_offset_pp", "offset_sd_pp", "observation_count",
    "last_observation_date", "raw_observation_pct", "rolling_median_observation_pct",
    "model_version",
)


@dataclass
class SohSettings:
    """Settings from dbt vars (dbt_project.yml, soh_*)."""

    holdout_share: float = 0.3  # vehicles never used for training (hash of the VIN)
    min_training_vehicles: int = 10
    min_training_observations: int = 100
    half_lives_days: tuple = (30.0, 60.0, 120.0, 240.0, 480.0)  # candidates, chosen by CV
    cv_folds: int = 5
    rolling_median_n: int = 5  # observations in the rolling-median baseline
    outlier_z: float = 4.0  # observations further than this many sigmas from the level are not used
    outlier_min_evidence: int = 5  # ... once the level rests on at least this many observations
    drift_max_efc: float = 1.0  # throughput since a full charge up to which SOC drift is modelled
    seed: int = 0
    # interval (apply): the Ah a label is made of are only as good as the current sensor's gain
    # (spec +-0.5..1 % of reading), an error every label of the vehicle shares and that no number
    # of labels averages away: added in quadrature to the level's posterior SD, pp
    systematic_sd_pp: float = 0.0
    # a vehicle whose labels scatter more than the noise model says (one-step-ahead z² above 1)
    # gets its posterior variance scaled by (k + sum z²) / (k + n), k pseudo-labels at z² = 1
    dispersion_prior_n: float = 5.0


@dataclass
class SohModel:
    version: str
    population: PopulationModel
    categories: dict  # categorical feature -> list of known levels
    feature_priors: dict  # SHRUNK_FEATURES -> the training fleet's median
    correction_coef: np.ndarray  # coefficients over condition_matrix()
    noise: tuple  # (a, b, c_partial, c_full, a_discharge, b_discharge[, a_ocv, b_ocv])
    tau2: float  # prior variance of a vehicle's level offset, pp^2
    gain_var: float  # prior variance of its BMS SOC gain error, (% SOC per EFC)^2
    disch_var: float  # prior variance of its discharge windows' offset from its charges, pp^2
    drift_max_efc: float  # SohSettings.drift_max_efc it was trained with
    half_life_days: float
    metrics: dict = field(default_factory=dict)
    # BMS-label bias (label_design's k): its fleet mean beta0 + beta1 x (100 - population SOH),
    # learnt on vehicles with OCV labels, and each vehicle's prior variance around it. None: a
    # model trained before OCV labels existed (apply then reads BMS labels only, as it did)
    bms_bias: tuple | None = None
    bms_bias_var: float | None = None


# ------------------------------------------------------------------------------------------
# serialisation (the model travels as one base64 string column of dwd_soh_model)
# ------------------------------------------------------------------------------------------


def dumps(model: SohModel) -> str:
    return base64.b64encode(pickle.dumps(model, protocol=5)).decode("ascii")


def loads(blob: str) -> SohModel:
    return pickle.loads(base64.b64decode(blob.encode("ascii")))


def is_holdout(vins: pd.Series | np.ndarray, share: float) -> np.ndarray:
    """Stable split: a VIN is held out when its SHA-1 falls in the first `share` of the range."""
    u, inv = np.unique(np.asarray(vins, dtype=object), return_inverse=True)
    h = np.array([int(hashlib.sha1(str(v).encode()).hexdigest()[:8], 16) for v in u]) / 2**32
    return (h < share)[inv]


# ------------------------------------------------------------------------------------------
# pieces
# ------------------------------------------------------------------------------------------


# usage ratios accumulate from a vehicle's first day in the warehouse: over its first weeks
# they swing with every charge. They enter the model shrunk towards the training fleet's median
# by the cycles behind them, share x E / (E + E0) + median x E0 / (E + E0), so that a vehicle's
# population SOH does not jump while its ratios settle.
SHRUNK_FEATURES = ("usage_behavior_score", "fast_charge_share", "high_c_rate_share",
                   "high_temp_share", "deep_discharge_share", "high_soc_rest_share")
SHRINK_CYCLES = 20.0


def _encode(features: pd.DataFrame, categories: dict, priors: dict) -> pd.DataFrame:
    x = pd.DataFrame(index=features.index)
    cycles = pd.to_numeric(features["equivalent_full_cycles"], errors="coerce").fillna(0.0)
    trust = (cycles / (cycles + SHRINK_CYCLES)).to_numpy(float)
    for c in FEATURE_COLUMNS:
        if c in CATEGORICAL:
            x[c] = pd.Categorical(features[c].astype("str"), categories=categories[c]).codes
            x[c] = x[c].astype("float64").where(x[c] >= 0)
        else:
            v = pd.to_numeric(features[c], errors="coerce").astype("float64").to_numpy()
            if c in SHRUNK_FEATURES:
                v = np.where(np.isfinite(v), trust * v + (1 - trust) * priors[c], priors[c])
            x[c] = v
    return x


def _feature_priors(features: pd.DataFrame) -> dict:
    return {c: float(np.nan_to_num(np.nanmedian(pd.to_numeric(features[c], errors="coerce")
                                                 .to_numpy(float))))
            for c in SHRUNK_FEATURES}


def _is_discharge(obs: pd.DataFrame) -> np.ndarray:
    return (obs["observation_type"].astype("str") == "discharge").to_numpy()


def _is_ocv(obs: pd.DataFrame) -> np.ndarray:
    """OCV-anchored labels (dwd_capacity_observation): no BMS SOC in them."""
    return (obs["observation_type"].astype("str") == "ocv").to_numpy()


def condition_matrix(obs: pd.DataFrame) -> np.ndarray:
    """Condition covariates of a capacity label: temperature below / above 25 degC (piecewise
    linear), DC charger, mean C-rate, 1/ΔSOC, a full charge and a discharge window; and for an
    OCV label a DC charger (its start voltage is read under a DC current: the resistance's
    error weighs more) and a falling SOC. Centred so that g = 0 at 25 degC, an AC charge, 0.3 C, ΔSOC 50, not
    full. The DC, ΔSOC and full-charge terms describe how a BMS's count behaves and apply to
    BMS labels only (on those the columns are the ones models before OCV labels were fitted
    on: the first seven). Among OCV labels, those from a rested AC charge start to its
    completion (the lowest current, the least I R to correct) are the reference: a DC start,
    or a pair of anchors the SOC fell between (trip starts, a full charge's end), gets an
    offset of its own, learnt within vehicles."""
    t = pd.to_numeric(obs["mean_temp_c"], errors="coerce").fillna(25.0).to_numpy(float)
    ocv = _is_ocv(obs)
    dc = (obs["charger_type"].astype("str") == "DC").to_numpy()
    return np.column_stack([
        np.minimum(t - 25.0, 0.0),
        np.maximum(t - 25.0, 0.0),
        (dc & ~ocv).astype(float),
        pd.to_numeric(obs["mean_c_rate"], errors="coerce").fillna(0.3).to_numpy(float) - 0.3,
        np.where(ocv, 0.0, 50.0 / obs["delta_soc_pct"].to_numpy(float) - 1.0),
        (obs["is_full_charge"].astype("bool").to_numpy() & ~ocv).astype(float),
        _is_discharge(obs).astype(float),
        (dc & ocv).astype(float),
        (ocv & (obs["charger_type"].astype("str") == "none").to_numpy()).astype(float),
    ])


def _noise_var(noise: tuple, delta_soc: np.ndarray, unknown: np.ndarray,
               discharge: np.ndarray, ocv: np.ndarray | None = None) -> np.ndarray:
    """sigma_i^2 = a + b / ΔSOC² for a charge, a_d + b_d / ΔSOC² for a discharge window (its
    integral runs over hours of varying current and rests), a_o + b_o / ΔSOC² for an OCV label
    (its start SOC read from a voltage), + c_partial or c_full when the label's SOC drift is
    not modelled (unknown = 1 partial charge or discharge, 2 full)."""
    a, b, c_partial, c_full, a_d, b_d = noise[:6]
    a_o, b_o = noise[6:8] if len(noise) >= 8 else (a, b)
    unknown = np.asarray(unknown)
    inv = 1.0 / np.square(np.asarray(delta_soc, float))
    ocv = np.zeros(len(inv), bool) if ocv is None else np.asarray(ocv, bool)
    base = np.where(ocv, a_o + b_o * inv, np.where(discharge, a_d + b_d * inv, a + b * inv))
    return (base + np.where(unknown == 1, c_partial, 0.0) + np.where(unknown == 2, c_full, 0.0))


def _day_number(d: pd.Series) -> np.ndarray:
    return (pd.to_datetime(d).to_numpy().astype("datetime64[D]").astype(np.int64)).astype(float)


def drift_design(obs: pd.DataFrame, soh_ref: np.ndarray,
                 max_efc: float) -> tuple[np.ndarray, np.ndarray]:
    """How a BMS SOC-counter gain error g (% SOC per equivalent full cycle of throughput) moves a
    label, per unit of g. A partial charge's ΔSOC is counted by the biased counter itself
    (u = -SOH/200). A full charge ends recalibrated at 100 % but starts from a SOC that drifted
    by g x the throughput since the last full charge, in cycles E = (charged Ah since it) / C +
    ΔSOC / 200 (the discharge down to the start): u = +SOH x E / ΔSOC. A discharge window's SOC
    drop is counted by the same counter while the throughput grows, so its bias is the partial
    charge's with the other sign (u = +SOH/200).

    A BMS also re-anchors its SOC (rests, voltage limits), so the drift stops growing somewhere:
    the linear model is used up to max_efc of throughput since the last full charge; beyond it,
    or before any full charge, the label's drift is not modelled (u = 0; its noise variance gets
    the extra term of its kind). Returns (u, unknown: 0 modelled, 1 partial, 2 full)."""
    full = obs["is_full_charge"].astype("bool").to_numpy()
    dsoc = obs["delta_soc_pct"].to_numpy(float)
    e = pd.to_numeric(obs["efc_since_full_charge"], errors="coerce").to_numpy(float) + dsoc / 200
    ocv = _is_ocv(obs)
    # an OCV label's SOC is read from the voltage, not counted: no drift, nothing unknown
    e = np.where(ocv, 0.0, e)
    known = (np.isfinite(e) & (e <= max_efc)) | ocv
    u = np.where(full, soh_ref * np.nan_to_num(e) / dsoc,
                 np.where(_is_discharge(obs), soh_ref / 200.0, -soh_ref / 200.0))
    unknown = np.where(known, 0, np.where(full, 2, 1))
    return np.where(known & ~ocv, u, 0.0), unknown


def label_design(obs: pd.DataFrame, soh_ref: np.ndarray,
                 max_efc: float) -> tuple[np.ndarray, np.ndarray]:
    """How each label depends on the vehicle's state (b, g, d, k):
    r_i = b + g·u_i + d·v_i + k·m_i + noise. b is the level offset, g the BMS SOC-counter gain
    error (drift_design), d what discharge windows read off the vehicle's charges (v = 1 for a
    discharge window: its hours of fluctuating current, regeneration and rests between trips
    integrate differently from a charge, by an amount of its own per vehicle), k what every
    label the BMS's SOC enters reads off the capacity (m = 1 for charge and discharge labels,
    0 for OCV labels): a BMS counting against a capacity belief that lags the fade makes its
    labels read that belief, by an amount that changes when the belief is updated. OCV labels
    pin b; BMS labels (many more) follow the level between them. Returns (H, n x 4; unknown
    of drift_design)."""
    u, unknown = drift_design(obs, soh_ref, max_efc)
    return np.column_stack([np.ones(len(u)), u, _is_discharge(obs).astype(float),
                            (~_is_ocv(obs)).astype(float)]), unknown


def _pairs(k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k) for j in range(i, k)]


def _precision(stats: np.ndarray, k: int, prior_var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, rhs) from the sufficient statistics [Σw·h_i·h_j (i <= j)..., Σw·h_i·r...]."""
    P = np.zeros((len(stats), k, k))
    for c, (i, j) in enumerate(_pairs(k)):
        P[:, i, j] = P[:, j, i] = stats[:, c]
    P += np.diag(1.0 / np.asarray(prior_var, float))
    return P, stats[:, len(_pairs(k)):len(_pairs(k)) + k]


def _stat_columns(H: np.ndarray, resid: np.ndarray, w: np.ndarray) -> np.ndarray:
    k = H.shape[1]
    return np.column_stack([w * H[:, i] * H[:, j] for i, j in _pairs(k)]
                           + [w * H[:, i] * resid for i in range(k)])


def posterior_at(obs_vin: np.ndarray, obs_day: np.ndarray, resid: np.ndarray, w: np.ndarray,
                 H: np.ndarray, q_vin: np.ndarray, q_day: np.ndarray, half_life: float,
                 prior_var: np.ndarray, strict: bool = False) -> dict:
    """Posterior of each query vehicle's state from that vehicle's observations up to the query
    day (strict: before it), with the model r_i = H_i · theta + noise_i, independent priors
    theta_k ~ N(0, prior_var_k), and exponential forgetting (half-life in days) of old
    observations. obs_* sorted by (vin, day). Returns mean (n_q x k), cov (n_q x k x k), n.

    Vectorized with per-vehicle cumulative sums of the weighted sufficient statistics."""
    lam = np.log(2.0) / half_life
    k = H.shape[1]
    n_q = len(q_day)
    oc, qc = _codes(obs_vin, q_vin)
    n_stats = len(_pairs(k)) + k
    stats = np.zeros((n_q, n_stats))
    n = np.zeros(n_q)
    if oc.size:
        starts = np.r_[0, np.flatnonzero(np.diff(oc)) + 1]
        first = np.zeros(oc.max() + 1)
        first[oc[starts]] = obs_day[starts]
        # the time origin of each vehicle is its first observation: exp() stays finite
        e = w * np.exp(lam * (obs_day - first[oc]))
        cols = np.column_stack([_stat_columns(H, resid, e), np.ones_like(e)])
        # running sums within each vehicle (not one fleet-wide sum minus its value at the
        # vehicle's start: a vehicle's result must not depend on which others share the batch)
        cum = pd.DataFrame(cols).groupby(oc, sort=False).cumsum().to_numpy()
        p, ok = _last_at_or_before(oc, obs_day, qc, q_day, strict)
        decay = np.exp(-lam * (q_day - first[np.clip(qc, 0, None)]))
        stats = np.where(ok[:, None], cum[p, :n_stats] * decay[:, None], 0.0)
        n = np.where(ok, cum[p, n_stats], 0.0)
    P, rhs = _precision(stats, k, prior_var)
    cov = np.linalg.inv(P)
    return {"mean": np.einsum("qij,qj->qi", cov, rhs), "cov": cov, "n": n}


def predict_label(post: dict, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the state predicts for labels of design H (one per query), and its variance."""
    return (np.einsum("qi,qi->q", H, post["mean"]),
            np.einsum("qi,qij,qj->q", H, post["cov"], H))


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------


class AgeingBasis:
    """Fade-model basis per chemistry (battery-brief §4.1: calendar t^z and throughput Q^z,
    Arrhenius-like temperature terms) with usage terms, and a level per vehicle model: smooth in
    time, for a linear model."""

    def __init__(self, chemistries: int, models: int):
        self.chemistries, self.models = chemistries, models

    def transform(self, x: pd.DataFrame) -> np.ndarray:
        t = np.clip(x["days_in_service"].fillna(0).to_numpy(float), 0, None) / 365.25
        q = np.clip(x["odometer_km"].fillna(0).to_numpy(float), 0, None) / 1e5
        temp = (x["lifetime_mean_temp_c"].fillna(20).to_numpy(float) - 20.0) / 10.0
        fast = np.nan_to_num(x["fast_charge_share"].to_numpy(float))
        harsh = np.nan_to_num(x["usage_behavior_score"].to_numpy(float)) / 100
        rest = np.nan_to_num(x["high_soc_rest_share"].to_numpy(float))
        chem = np.nan_to_num(x["chemistry"].to_numpy(float), nan=-1)
        model = np.nan_to_num(x["vehicle_model"].to_numpy(float), nan=-1)
        cols = []
        for k in range(self.chemistries):
            on = (chem == k).astype(float)
            for z in (0.5, 0.75, 1.0):
                cols += [on * t**z, on * t**z * temp]
            for z in (0.5, 0.8, 1.0):
                cols += [on * q**z, on * q**z * fast]
            cols += [on * t**0.5 * harsh, on * t**0.5 * rest]
        cols += [(model == m).astype(float) for m in range(self.models)]
        return np.column_stack(cols)


class PopulationModel:
    """f(x): the mean of a ridge regression on AgeingBasis (smooth in time, extrapolates by the
    fade laws) and a gradient-boosted model, monotone decreasing in days in service, odometer and
    cycles (learns what the basis does not). Each alone either jumps when a tree split is
    crossed or misses interactions; the mean keeps a vehicle's population SOH smooth."""

    def __init__(self, x: pd.DataFrame, y: np.ndarray, w: np.ndarray, seed: int, vehicles: int,
                 categories: dict):
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.linear_model import Ridge

        self.basis = AgeingBasis(len(categories["chemistry"]), len(categories["vehicle_model"]))
        self.ridge = Ridge(alpha=1.0).fit(self.basis.transform(x), y, sample_weight=w)
        # a leaf must hold several vehicles' worth of labels, or the trees learn vehicles
        self.hgb = HistGradientBoostingRegressor(
            loss="squared_error", learning_rate=0.05, max_iter=300, max_leaf_nodes=15,
            l2_regularization=1.0, min_samples_leaf=max(20, int(3 * len(y) / max(vehicles, 1))),
            monotonic_cst=[m for _, m in FEATURES],
            categorical_features=[c in CATEGORICAL for c in FEATURE_COLUMNS],
            random_state=seed).fit(x, y, sample_weight=w)

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        if not len(x):
            return np.zeros(0)
        return 0.5 * (self.ridge.predict(self.basis.transform(x)) + self.hgb.predict(x))


def _codes(obs_vin: np.ndarray, q_vin: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the observations' VINs (sorted order) and of the queries' (-1: none)."""
    u = np.unique(np.asarray(obs_vin, dtype=object))
    oc = np.searchsorted(u, np.asarray(obs_vin, dtype=object)).astype(np.int64)
    qv = np.asarray(q_vin, dtype=object)
    if not u.size:
        return oc, np.full(len(qv), -1, np.int64)
    qc = np.searchsorted(u, qv)
    found = (qc < u.size) & (u[np.clip(qc, 0, u.size - 1)] == qv)
    return oc, np.where(found, qc, -1).astype(np.int64)


def _last_at_or_before(o_code: np.ndarray, o_day: np.ndarray, q_code: np.ndarray,
                       q_day: np.ndarray, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Index of each query's vehicle's last row on or before (strict: before) its day, rows
    sorted by (code, day); and whether there is one."""
    key_o = o_code.astype(float) * 1e7 + o_day
    key_q = q_code.astype(float) * 1e7 + q_day
    pos = np.searchsorted(key_o, key_q, side="left" if strict else "right") - 1
    p = np.clip(pos, 0, None)
    return p, (q_code >= 0) & (pos >= 0) & (o_code[p] == q_code)


def _valid_observations(obs: pd.DataFrame) -> pd.DataFrame:
    ok = obs["capacity_reject_reason"].isna() & obs["soh_obs_pct"].notna()
    out = obs.loc[ok].copy()
    out["day"] = _day_number(out["start_date"])
    # observation_type: an OCV label can share its start with a charge label; a total order
    # keeps the sums (and the retrained model) the same whatever order the rows come in
    return out.sort_values(["vin", "day", "start_time", "observation_type"], kind="stable",
                           ignore_index=True)


def _rolling_median(obs: pd.DataFrame, n: int) -> np.ndarray:
    return (obs.groupby("vin", sort=False)["soh_obs_pct"]
            .rolling(n, min_periods=1).median().to_numpy())


def _per_vehicle_fit(vin: np.ndarray, H: np.ndarray, r: np.ndarray, w: np.ndarray,
                     ridge: float = 1e-3, names: tuple | None = None
                     ) -> tuple[np.ndarray, pd.DataFrame]:
    """Weighted least squares r = H · theta_v per vehicle (all its observations, no prior but a
    small ridge). ``names``: the state each column of H belongs to (default b, g, d, k in
    label_design's order). Returns (fitted r, per-vehicle table: theta, var, n, n per kind)."""
    k = H.shape[1]
    names = names or ("b", "g", "d", "k")[:k]
    cols = _stat_columns(H, r, w)
    kind = {nm: H[:, i] for i, nm in enumerate(names)}
    df = pd.DataFrame(cols).assign(vin=vin, n=1.0, n_discharge=kind.get("d", 0.0),
                                   n_ocv=1.0 - kind["k"] if "k" in kind else 0.0)
    g = df.groupby("vin", sort=False).sum()
    P, rhs = _precision(g.iloc[:, :cols.shape[1]].to_numpy(), k, np.full(k, 1.0 / ridge))
    cov = np.linalg.inv(P)
    theta = np.einsum("qij,qj->qi", cov, rhs)
    per = pd.DataFrame({"n": g["n"].to_numpy(), "n_discharge": g["n_discharge"].to_numpy(),
                        "n_ocv": g["n_ocv"].to_numpy()}, index=g.index)
    for i, name in enumerate(names):
        per[name] = theta[:, i]
        per[f"var_{name}"] = cov[:, i, i]
    pos = per.index.get_indexer(vin)
    return np.einsum("qi,qi->q", H, theta[pos]), per


def _fit_noise(e: np.ndarray, dsoc: np.ndarray, unknown: np.ndarray, dof: np.ndarray,
               discharge: np.ndarray, ocv: np.ndarray | None = None) -> tuple:
    """sigma^2 = a + b / ΔSOC² per kind of label (charge, discharge window, OCV), + c_partial /
    c_full for labels whose drift is not modelled; least squares on squared residuals of the
    per-vehicle fits (scaled by n / (n - 2) for the two fitted parameters)."""
    r2 = np.square(e) * dof
    r2 = np.minimum(r2, np.quantile(r2, 0.99)) if r2.size else r2  # one wild label

    def level(kind: np.ndarray) -> tuple[float, float] | None:
        k = kind & (unknown == 0)
        if k.sum() >= 3:
            A = np.column_stack([np.ones(k.sum()), 1.0 / np.square(dsoc[k])])
            (a, b), *_ = np.linalg.lstsq(A, r2[k], rcond=None)
        elif kind.any():
            a, b = float(np.mean(r2[kind])), 0.0
        else:
            return None
        return max(float(a), 0.01), max(float(b), 0.0)

    ocv = np.zeros(len(e), bool) if ocv is None else np.asarray(ocv, bool)
    a, b = level(~discharge & ~ocv) or (float(np.mean(r2)) if r2.size else 1.0, 0.0)
    a_d, b_d = level(discharge) or (a, b)
    a_o, b_o = level(ocv) or (a, b)
    base = np.where(ocv, a_o + b_o / np.square(dsoc),
                    np.where(discharge, a_d + b_d / np.square(dsoc), a + b / np.square(dsoc)))
    extra = []
    for kind in (1, 2):
        m = unknown == kind
        extra.append(max(float(np.mean(r2[m] - base[m])), 0.0) if m.any() else 0.0)
    return a, b, extra[0], extra[1], a_d, b_d, a_o, b_o


def _bms_bias(per: pd.DataFrame, vin: np.ndarray, ref: np.ndarray, ocv: np.ndarray,
              min_vehicles: int = 5) -> tuple[float, float]:
    """The fleet's typical BMS-label bias k = beta1 x (100 - population SOH): what the
    labels the BMS's SOC enters read above the OCV labels of the same vehicle, against how far
    the vehicle has faded (a capacity belief that lags the fade lags more on an older pack).
    Least squares over the vehicles with labels of both sources, each at its BMS labels' mean
    fade; (0, 0) with fewer than min_vehicles such vehicles (nothing to learn it from)."""
    both = (per["n_ocv"] >= 2) & (per["n"] - per["n_ocv"] >= 2)
    if both.sum() < min_vehicles:
        return 0.0, 0.0
    fade = pd.Series(np.where(ocv, np.nan, 100.0 - ref)).groupby(vin, sort=False).mean()
    z = fade.reindex(per.index[both]).to_numpy(float)
    k = per.loc[both, "k"].to_numpy(float)
    ok = np.isfinite(z) & np.isfinite(k)
    if ok.sum() < min_vehicles:
        return 0.0, 0.0
    # through the origin: a belief that lags the fade reads nothing on a new pack, and a fleet's
    # anchored vehicles rarely span enough ages to tell an intercept from a slope (an intercept
    # learnt on one chemistry's vehicles would be carried to the other's, whatever its fade)
    b1 = float(np.sum(k[ok] * z[ok]) / max(float(np.sum(z[ok] ** 2)), 1e-9))
    return 0.0, b1


def _bms_bias_mean(bias: tuple | None, ref: np.ndarray, ocv: np.ndarray) -> np.ndarray:
    """What a BMS label is expected to read above the capacity (label_design's k, its mean)."""
    if bias is None:
        return np.zeros(len(ref))
    return np.where(ocv, 0.0, bias[0] + bias[1] * (100.0 - np.asarray(ref, float)))


def _moment_var(est: pd.Series, sampling_var: pd.Series, floor: float) -> float:
    """Between-vehicle variance of an estimate net of its mean sampling variance."""
    ok = np.isfinite(est) & np.isfinite(sampling_var)
    if ok.sum() < 3:
        return floor
    return float(max(np.var(est[ok]) - np.mean(sampling_var[ok]), floor))


def train(obs: pd.DataFrame, settings: SohSettings, trained_through: str) -> SohModel | None:
    """Train on the training vehicles' valid observations. ``obs``: capacity observations with
    the vehicle-day features of their start_date (OBSERVATION_COLUMNS + FEATURE_COLUMNS).
    Returns None when there are too few observations or vehicles to train on."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GroupKFold

    o = _valid_observations(obs)
    hold = is_holdout(o["vin"], settings.holdout_share)
    tr = o.loc[~hold].reset_index(drop=True)
    n_veh = tr["vin"].nunique()
    if n_veh < settings.min_training_vehicles or len(tr) < settings.min_training_observations:
        return None
    categories = {c: sorted(o[c].astype("str").unique().tolist()) for c in CATEGORICAL}
    priors = _feature_priors(tr)
    x = _encode(tr, categories, priors)
    y = tr["soh_obs_pct"].to_numpy(float)
    vin = tr["vin"].to_numpy(object)
    dsoc = tr["delta_soc_pct"].to_numpy(float)
    day = tr["day"].to_numpy(float)
    w0 = np.square(dsoc / 50.0)  # first pass: precision ~ ΔSOC² (SOC quantisation)

    # pass 1: population model; per-vehicle level + SOC-gain fits; condition correction and
    # noise model on what the vehicle's own state does not explain
    f1 = PopulationModel(x, y, w0, settings.seed, n_veh, categories)
    ref = f1.predict(x)
    H, unknown = label_design(tr, ref, settings.drift_max_efc)
    cond = condition_matrix(tr)
    ocv = _is_ocv(tr)
    # (b, g, k) only: the fleet-wide difference of discharge windows from charges stays in the
    # residuals for the condition correction to learn; d is each vehicle's deviation from it.
    # k separates what the BMS's labels read from what the vehicle's OCV labels read
    fit1, per1 = _per_vehicle_fit(vin, H[:, [0, 1, 3]], y - ref, w0, names=("b", "g", "k"))
    bms_bias = _bms_bias(per1, vin, ref, ocv)
    mu = _bms_bias_mean(bms_bias, ref, ocv)
    within = y - ref - fit1
    ridge = Ridge(alpha=1.0, fit_intercept=False).fit(cond, within, sample_weight=w0)
    coef = ridge.coef_.astype(float)
    # the BMS labels' typical bias leaves the target: the population model learns the capacity
    # the OCV labels anchor, not a BMS's belief of it
    y_c = y - cond @ coef - mu
    fit2, per = _per_vehicle_fit(vin, H, y_c - ref, w0)
    n_v = per["n"].reindex(vin).to_numpy()
    n_par = (2 + (per["n_discharge"].reindex(vin).to_numpy() > 0)
             + (per["n_ocv"].reindex(vin).to_numpy() > 0))
    dof = np.where(n_v > n_par, n_v / np.maximum(n_v - n_par, 1), np.nan)
    e2 = y_c - ref - fit2
    okn = np.isfinite(dof)
    discharge = _is_discharge(tr)
    noise = _fit_noise(e2[okn], dsoc[okn], unknown[okn], dof[okn], discharge[okn], ocv[okn])
    s2 = _noise_var(noise, dsoc, unknown, discharge, ocv)
    w = 1.0 / s2
    keep = ~(np.isfinite(dof) & (np.abs(e2) * np.sqrt(np.nan_to_num(dof, nan=1.0))
                                 > settings.outlier_z * np.sqrt(s2)))

    # grouped cross-validation by vehicle: out-of-fold population predictions
    folds = min(settings.cv_folds, n_veh)
    oof = np.full(len(tr), np.nan)
    for k, (a, b) in enumerate(GroupKFold(n_splits=folds).split(x, y_c, groups=vin)):
        ka = a[keep[a]]
        est = PopulationModel(x.iloc[ka], y_c[ka], w[ka], settings.seed + k,
                              len(np.unique(vin[ka])), categories)
        oof[b] = est.predict(x.iloc[b])
    r_oof = y_c - oof
    H_oof, _ = label_design(tr, oof, settings.drift_max_efc)
    # priors of the vehicle state: between-vehicle spread of the per-vehicle fits
    _, per = _per_vehicle_fit(vin[keep], H_oof[keep], r_oof[keep], w[keep])
    gain_var = _moment_var(per["g"], per["var_g"], 0.01)
    # d is identified on vehicles with enough labels of both kinds
    both = (per["n_discharge"] >= 5) & (per["n"] - per["n_discharge"] >= 5)
    disch_var = _moment_var(per.loc[both, "d"], per.loc[both, "var_d"], 0.01)
    # the level prior is what the population model misses on a vehicle it has not seen: the
    # residuals of its first two observations share that miss but not their label noise, so
    # E[r1·r2] = tau² + u1·u2·gain_var + v1·v2·disch_var + m1·m2·bias_var; read on OCV labels
    # where enough vehicles have two (E[r1·r2] = tau² there)
    # k (around its fleet mean) is identified on vehicles with labels of both sources
    anchored = (per["n_ocv"] >= 2) & (per["n"] - per["n_ocv"] >= 2)
    bias_var = _moment_var(per.loc[anchored, "k"], per.loc[anchored, "var_k"], 0.05)
    tau2 = _moment_var(per["b"], per["var_b"], 0.05)
    kv, kr, kH = vin[keep], r_oof[keep], H_oof[keep]
    first = np.flatnonzero(np.r_[True, kv[1:] != kv[:-1]][:-1] & (kv[1:] == kv[:-1]))
    # a vehicle's first two OCV labels share b alone (no BMS in them: no g, d or k)
    ov, orr = kv[kH[:, 3] == 0], kr[kH[:, 3] == 0]
    first_ocv = np.flatnonzero(np.r_[True, ov[1:] != ov[:-1]][:-1] & (ov[1:] == ov[:-1]))
    if first_ocv.size >= settings.min_training_vehicles:
        tau2 = max(float(np.mean(orr[first_ocv] * orr[first_ocv + 1])), 0.05)
    elif first.size >= settings.min_training_vehicles:
        prod = (kr[first] * kr[first + 1] - kH[first, 1] * kH[first + 1, 1] * gain_var
                - kH[first, 2] * kH[first + 1, 2] * disch_var
                - kH[first, 3] * kH[first + 1, 3] * bias_var)
        tau2 = max(float(np.mean(prod)), 0.05)
    prior_var = np.array([tau2, gain_var, disch_var, bias_var])

    # half-life: one-step-ahead prediction of each next observation of vehicles the fold's
    # population model never saw
    best = None
    for h in settings.half_lives_days:
        post = posterior_at(vin[keep], day[keep], r_oof[keep], w[keep], H_oof[keep], vin, day,
                            h, prior_var, strict=True)
        pred, var_state = predict_label(post, H_oof)
        e = (r_oof - pred)[keep]
        score = float(np.mean(np.square(e)))
        if best is None or score < best[0]:
            best = (score, h, var_state[keep], e)
    _, half_life, var_state, e = best
    inside = np.abs(e) <= Z90 * np.sqrt(var_state + s2[keep])

    population = PopulationModel(x.iloc[np.flatnonzero(keep)], y_c[keep], w[keep], settings.seed,
                                 n_veh, categories)
    # the BMS bias's mean again, against the fade of the population model apply() will use:
    # the first one was measured against f1, which the biased labels pulled up (its fade too
    # small, its slope too steep for an unbiased fade)
    ref_fin = population.predict(x)
    H_fin, _ = label_design(tr, ref_fin, settings.drift_max_efc)
    _, per_fin = _per_vehicle_fit(vin[keep], H_fin[keep], (y - cond @ coef - ref_fin)[keep],
                                  w[keep])
    bms_bias = _bms_bias(per_fin, vin[keep], ref_fin[keep], ocv[keep])
    metrics = {
        "training_vehicles": int(n_veh),
        "holdout_vehicles": int(o.loc[hold, "vin"].nunique()),
        "training_observations": len(tr),
        "observations_used": int(keep.sum()),
        "cv_folds": int(folds),
        "cv_population_rmse_pp": float(np.sqrt(np.mean(np.square(r_oof[keep])))),
        "cv_next_observation_rmse_pp": float(np.sqrt(np.mean(np.square(e)))),
        "cv_next_observation_coverage90": float(np.mean(inside)),
        "noise_sd_at_dsoc50_pp": float(np.sqrt(noise[0] + noise[1] / 2500.0)),
        "noise_sd_discharge_at_dsoc50_pp": float(np.sqrt(noise[4] + noise[5] / 2500.0)),
        "training_discharge_observations": int(discharge.sum()),
        "vehicle_offset_sd_pp": float(np.sqrt(tau2)),
        "soc_gain_sd_pct_per_efc": float(np.sqrt(gain_var)),
        "discharge_offset_sd_pp": float(np.sqrt(disch_var)),
        "training_ocv_observations": int(ocv.sum()),
        "ocv_anchored_vehicles": int(anchored.sum()),
        "bms_bias_pp": float(bms_bias[0]),
        "bms_bias_pp_per_pp_fade": float(bms_bias[1]),
        "bms_bias_sd_pp": float(np.sqrt(bias_var)),
        "half_life_days": float(half_life),
        "temp_coef_below_25c_pp_per_c": float(coef[0]),
        "temp_coef_above_25c_pp_per_c": float(coef[1]),
        "dc_charger_pp": float(coef[2]),
        "discharge_window_pp": float(coef[6]),
        "trained_through": trained_through,
        "holdout_share": float(settings.holdout_share),
    }
    model = SohModel(version="", population=population, categories=categories,
                     feature_priors=priors,
                     correction_coef=coef, noise=noise, tau2=tau2, gain_var=gain_var,
                     disch_var=disch_var,
                     drift_max_efc=settings.drift_max_efc,
                     half_life_days=float(half_life),
                     metrics=metrics, bms_bias=bms_bias, bms_bias_var=bias_var)
    digest = hashlib.sha1(pickle.dumps((population, coef, noise, tau2, gain_var, disch_var,
                                        half_life, bms_bias, bias_var),
                                       protocol=5)).hexdigest()[:8]
    model.version = f"soh-{trained_through}-{digest}"
    return model


# ------------------------------------------------------------------------------------------
# application
# ------------------------------------------------------------------------------------------


def attach_features(obs: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Observations with the vehicle-day features of their start_date (what the warehouse does
    with a join)."""
    return obs.merge(features.rename(columns={"date": "start_date"})[
        ["vin", "start_date", *FEATURE_COLUMNS]], on=["vin", "start_date"], how="inner",
        suffixes=("", "_f"))


def apply(model: SohModel, features: pd.DataFrame, obs: pd.DataFrame,
          settings: SohSettings | None = None) -> pd.DataFrame:
    """SOH of every vehicle-day in ``features`` from the vehicle's observations up to that day.
    ``obs``: the capacity observations of those vehicles with their own day's features
    (attach_features); any dates, only those up to each day are used."""
    settings = settings or SohSettings()
    f = features.reset_index(drop=True)
    o = _valid_observations(obs)
    pop = (model.population.predict(_encode(f, model.categories, model.feature_priors))
           if len(f) else np.zeros(0))
    q_day = _day_number(f["date"]) if len(f) else np.zeros(0)
    q_vin = f["vin"].to_numpy(object)

    legacy = getattr(model, "bms_bias", None) is None
    if legacy:
        # a model trained before OCV labels: it reads the labels it was trained on
        o = o.loc[~_is_ocv(o)].reset_index(drop=True)
    if len(o):
        ocv = _is_ocv(o)
        cond = condition_matrix(o)[:, :len(model.correction_coef)]
        ref = model.population.predict(_encode(o, model.categories, model.feature_priors))
        y_c = (o["soh_obs_pct"].to_numpy(float) - cond @ model.correction_coef
               - _bms_bias_mean(getattr(model, "bms_bias", None), ref, ocv))
        r = y_c - ref
        H, unknown = label_design(o, ref, model.drift_max_efc)
        prior = [model.tau2, model.gain_var, model.disch_var]
        if legacy:
            H = H[:, :3]
        else:
            prior.append(model.bms_bias_var)
        s2 = _noise_var(model.noise, o["delta_soc_pct"].to_numpy(float), unknown,
                        _is_discharge(o), ocv)
        ovin = o["vin"].to_numpy(object)
        oday = o["day"].to_numpy(float)
        args = (model.half_life_days, np.array(prior))
        # outliers: far from what the vehicle's earlier observations predict for this one
        pre = posterior_at(ovin, oday, r, 1.0 / s2, H, ovin, oday, *args, strict=True)
        pred, var_state = predict_label(pre, H)
        # (only once a few labels stand behind the state: a vehicle far from its peers must
        # be able to pull away from the population prior)
        use = ((pre["n"] < settings.outlier_min_evidence)
               | (np.abs(r - pred) <= settings.outlier_z * np.sqrt(var_state + s2)))
        post = posterior_at(ovin[use], oday[use], r[use], 1.0 / s2[use], H[use], q_vin, q_day,
                            *args)
        mean, var, n = post["mean"][:, 0], post["cov"][:, 0, 0], post["n"]
        var = var * _dispersion(ovin[use], oday[use], (np.square(r - pred)
                                                       / (var_state + s2))[use],
                                q_vin, q_day, settings.dispersion_prior_n)
        o["rolling"] = _rolling_median(o, settings.rolling_median_n)
        last = (o.groupby(["vin", "start_date"], sort=False)
                .agg(raw=("soh_obs_pct", "mean"), rolling=("rolling", "last")).reset_index())
        last["day"] = _day_number(last["start_date"])
        last = last.sort_values(["vin", "day"], ignore_index=True)
        lvin, lq = _codes(last["vin"].to_numpy(object), q_vin)
        p, okp = _last_at_or_before(lvin, last["day"].to_numpy(float), lq, q_day)
        last_date = np.where(okp, last["start_date"].to_numpy()[p], None)
        same_day = okp & (last["day"].to_numpy(float)[p] == q_day)
        raw = np.where(same_day, last["raw"].to_numpy(float)[p], np.nan)
        rolling = np.where(okp, last["rolling"].to_numpy(float)[p], np.nan)
    else:
        mean = np.zeros(len(f))
        var = np.full(len(f), model.tau2)
        n = np.zeros(len(f))
        last_date = np.full(len(f), None)
        raw = rolling = np.full(len(f), np.nan)

    soh = pop + mean
    half = Z90 * np.sqrt(var + settings.systematic_sd_pp ** 2)
    out = pd.DataFrame({
        "vin": f["vin"],
        "date": pd.to_datetime(f["date"]).dt.date,
        "soh_pct": np.clip(soh, 0.0, 110.0),
        "soh_lower_pct": np.clip(soh - half, 0.0, 110.0),
        "soh_upper_pct": np.clip(soh + half, 0.0, 110.0),
        "capacity_ah": soh / 100.0 * f["rated_capacity_ah"].to_numpy(float),
        "population_soh_pct": pop,
        "vehicle_offset_pp": mean,
        "offset_sd_pp": np.sqrt(var),
        "observation_count": n.astype("int64"),
        "last_observation_date": pd.to_datetime(pd.Series(last_date, dtype="object")).dt.date,
        "raw_observation_pct": raw,
        "rolling_median_observation_pct": rolling,
        "model_version": model.version,
    })
    return out[list(OUTPUT_COLUMNS)]


def _dispersion(o_vin: np.ndarray, o_day: np.ndarray, z2: np.ndarray, q_vin: np.ndarray,
                q_day: np.ndarray, prior_n: float) -> np.ndarray:
    """Per query: how much more the vehicle's labels up to that day scattered around what their
    predecessors predicted than the noise model says, (prior_n + sum z²) / (prior_n + n), at
    least 1. Labels that disagree (a BMS re-anchoring, a capacity belief refreshed) widen the
    interval; a vehicle whose labels agree keeps it. Within the vehicle: nothing fitted."""
    out = np.ones(len(q_day))
    if not len(z2):
        return out
    oc, qc = _codes(o_vin, q_vin)
    cum = (pd.DataFrame({"z2": np.nan_to_num(z2, nan=1.0), "n": np.ones(len(z2))})
           .groupby(oc, sort=False).cumsum().to_numpy())
    p, ok = _last_at_or_before(oc, o_day, qc, q_day)
    f = (prior_n + cum[p, 0]) / (prior_n + cum[p, 1])
    return np.where(ok, np.maximum(f, 1.0), 1.0)


def model_frame(model: SohModel | None, version_number: int = 1) -> pd.DataFrame:
    """The registry row of dwd_soh_model (empty when nothing was trained); version_number
    orders the versions (1 + the versions stored before)."""
    text = ("model_version", "trained_through", "artifact")
    cols = ["version_number", *text, *sorted(METRIC_KEYS)]
    if model is None:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c == "version_number" else
                                          "str" if c in text else "float64") for c in cols})
    row = {"version_number": int(version_number), "model_version": model.version,
           "trained_through": model.metrics["trained_through"], "artifact": dumps(model)}
    row.update({k: float(model.metrics[k]) for k in METRIC_KEYS})
    return pd.DataFrame([row])[cols]


METRIC_KEYS = (
    "holdout_share", "training_vehicles", "holdout_vehicles", "training_observations",
    "observations_used", "cv_folds", "cv_population_rmse_pp", "cv_next_observation_rmse_pp",
    "cv_next_observation_coverage90", "noise_sd_at_dsoc50_pp", "noise_sd_discharge_at_dsoc50_pp",
    "training_discharge_observations", "vehicle_offset_sd_pp", "discharge_window_pp",
    "soc_gain_sd_pct_per_efc", "discharge_offset_sd_pp", "half_life_days",
    "temp_coef_below_25c_pp_per_c", "temp_coef_above_25c_pp_per_c", "dc_charger_pp",
)


def spark_registry_schema() -> str:
    return ", ".join(
        ["version_number bigint", "model_version string", "trained_through string",
         "artifact string"] + [f"{k} double" for k in sorted(METRIC_KEYS)])


_OUTPUT_TYPES = {
    "vin": ("str", "string"), "date": ("object", "date"), "soh_pct": ("float64", "double"),
    "soh_lower_pct": ("float64", "double"), "soh_upper_pct": ("float64", "double"),
    "capacity_ah": ("float64", "double"), "population_soh_pct": ("float64", "double"),
    "vehicle_offset_pp": ("float64", "double"), "offset_sd_pp": ("float64", "double"),
    "observation_count": ("int64", "bigint"), "last_observation_date": ("object", "date"),
    "raw_observation_pct": ("float64", "double"),
    "rolling_median_observation_pct": ("float64", "double"), "model_version": ("str", "string"),
}


def empty_output() -> pd.DataFrame:
    df = pd.DataFrame({c: pd.Series(dtype=_OUTPUT_TYPES[c][0]) for c in OUTPUT_COLUMNS})
    for c in ("date", "last_observation_date"):
        df[c] = pd.to_datetime(df[c]).dt.date
    return df


def spark_output_schema() -> str:
    return ", ".join(f"{c} {_OUTPUT_TYPES[c][1]}" for c in OUTPUT_COLUMNS)
