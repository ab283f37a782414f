"""Static reference data shared by the simulator and the warehouse logic.

Vehicle models, cell chemistries (open-circuit-voltage curves, fade-model constants), climate
regions and usage profiles. Values are typical of Chinese passenger NEVs; the fade constants are
calibrated to the models of battery-brief §4.1 (BLAST-Lite / Schmalstieg / Wang) so that a
simulated fleet ages the way published field fleets do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --- cell chemistries -----------------------------------------------------------------------

# OCV–SOC at 25 °C (SOC %, cell V). NCM is steep and near-linear; LFP has its long plateau,
# which is why LFP capacity estimation from voltage is hard and the warehouse relies on Ah.
OCV_SOC = {
    "NCM": (
        np.array([0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100], dtype=float),
        np.array([3.00, 3.35, 3.45, 3.55, 3.61, 3.66, 3.72, 3.80, 3.89, 3.98, 4.07, 4.18]),
    ),
    "LFP": (
        np.array([0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100], dtype=float),
        np.array([2.80, 3.10, 3.20, 3.25, 3.28, 3.29, 3.295, 3.30, 3.31, 3.33, 3.34, 3.36, 3.45]),
    ),
}


@dataclass(frozen=True)
class FadeModel:
    """Calendar + cycle capacity fade, q = k_cal·τ^z_cal + k_cyc·EFC_eff^z_cyc.

    τ is Arrhenius- and SOC-weighted days in service, EFC_eff C-rate- and temperature-weighted
    equivalent full cycles (battery-brief §4.1). Exponents follow the brief's advice: NCM
    0.75 / 0.5, LFP 0.526 / 0.828.
    """

    k_cal: float  # fraction lost after one reference day^z (25 °C, reference SOC)
    z_cal: float
    ea_cal_k: float  # activation energy / R, kelvin
    k_cyc: float
    z_cyc: float
    ea_cyc_k: float


FADE = {
    # NCM: 2.8 %/yr calendar at 25 °C (0.028 / 365^0.75); ~9 % after 1000 EFC.
    "NCM": FadeModel(k_cal=3.35e-4, z_cal=0.75, ea_cal_k=6976.0, k_cyc=2.85e-3, z_cyc=0.5,
                     ea_cyc_k=2500.0),
    # LFP: ~1 %/yr calendar at 25 °C; 6.6 % after 1000 EFC at 0.5 C.
    "LFP": FadeModel(k_cal=4.5e-4, z_cal=0.526, ea_cal_k=5210.0, k_cyc=2.16e-4, z_cyc=0.828,
                     ea_cyc_k=2190.0),
}


@dataclass(frozen=True)
class VehicleModel:
    code: str
    chemistry: str
    cells: int
    probes: int
    rated_ah: float
    cell_nominal_v: float
    current_discharge_positive: bool
    cell_r_mohm: float  # cell DC resistance at 25 °C, BOL
    max_dc_c_rate: float
    kwh_per_km: float  # at 25 °C, mixed urban driving
    mass_kg: float
    share: float

    @property
    def nominal_v(self) -> float:
        return self.cells * self.cell_nominal_v

    @property
    def rated_kwh(self) -> float:
        return round(self.nominal_v * self.rated_ah / 1000.0, 1)


VEHICLE_MODELS = (
    VehicleModel("EVA-N60", "NCM", 96, 24, 150.0, 3.65, True, 0.55, 1.5, 0.135, 1750.0, 0.45),
    VehicleModel("EVB-L55", "LFP", 104, 32, 165.0, 3.20, True, 0.45, 1.0, 0.140, 1850.0, 0.35),
    # An OEM whose T-BOX reports charge current as positive: ODS must flip its sign.
    VehicleModel("EVC-N45", "NCM", 90, 16, 135.0, 3.65, False, 0.60, 1.2, 0.125, 1600.0, 0.20),
)

# --- climate regions: annual mean °C, seasonal amplitude °C, share of fleet -----------------
REGIONS = (
    ("Harbin", 4.5, 20.0, 0.10),
    ("Beijing", 12.5, 14.5, 0.25),
    ("Shanghai", 17.0, 11.0, 0.25),
    ("Chengdu", 16.5, 9.5, 0.15),
    ("Guangzhou", 22.5, 7.0, 0.25),
)


@dataclass(frozen=True)
class UsageProfile:
    name: str
    share: float
    daily_km_median: float
    daily_km_sigma: float  # lognormal sigma
    trip_km_mean: float
    speed_kmh_mean: float
    day_start_h: float
    day_end_h: float
    gap_min_median: float  # parking between trips, minutes
    dc_share_day: float  # probability a daytime charge is DC
    home_ac_kw: float  # 0 = no home charger


USAGE_PROFILES = (
    UsageProfile("private", 0.55, 38.0, 0.55, 13.0, 31.0, 7.5, 21.5, 150.0, 0.30, 7.0),
    UsageProfile("ride_hailing", 0.30, 137.0, 0.35, 9.0, 26.0, 6.5, 23.0, 12.0, 0.90, 0.0),
    UsageProfile("taxi", 0.10, 190.0, 0.25, 8.0, 24.0, 6.0, 23.5, 8.0, 0.95, 0.0),
    UsageProfile("logistics", 0.05, 110.0, 0.30, 15.0, 33.0, 7.0, 19.0, 25.0, 0.70, 11.0),
)

FAULT_TYPES = (
    "thermal_runaway_precursor",
    "internal_short",
    "insulation_degradation",
    "cell_inconsistency",
    "sensor_fault",
)

# GB/T 32960.3-2016 Table 18
ALARM_BITS = {
    0: "temperature_difference",
    1: "battery_high_temperature",
    2: "ress_over_voltage",
    3: "ress_under_voltage",
    4: "soc_low",
    5: "cell_over_voltage",
    6: "cell_under_voltage",
    7: "soc_too_high",
    8: "soc_jump",
    9: "ress_mismatch",
    10: "poor_cell_consistency",
    11: "insulation",
    12: "dcdc_temperature",
    13: "braking_system",
    14: "dcdc_status",
    15: "motor_controller_temperature",
    16: "high_voltage_interlock",
    17: "motor_temperature",
    18: "ress_over_charge",
}
