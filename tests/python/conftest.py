"""Shared fixtures: one small simulated fleet per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from nev_battery.simulate import SimConfig, simulate

# 12 vehicles x 8 days with a high fault share, so every fault type and a thermal event appear
SMALL_FLEET = SimConfig(vehicles=12, days=8, seed=11, fault_share=0.45)


@pytest.fixture(scope="session")
def small_fleet(tmp_path_factory) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("fleet")
    res = simulate(SMALL_FLEET, root / "landing", root / "truth")
    return root / "landing", root / "truth", res
