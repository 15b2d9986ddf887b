"""Shared fixtures. Heavy data is generated once per session into a temporary folder."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

SHARED_TIRE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mvtec3d_tire_sample" / "tire"

_FIGURES: list[tuple[str, str]] = []  # (test id, line): shown after the run, also under -q and capture


@pytest.fixture
def record_figure(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """``record_figure(line)``: a measured figure, printed in the run's summary (CI logs show it)."""
    return lambda line: _FIGURES.append((request.node.nodeid, line))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.write_sep("-", "figures recorded by tests")
        for nodeid, line in _FIGURES:
            terminalreporter.write_line(f"{nodeid}: {line}")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep preprocessing/feature caches of the test run out of the user's home."""
    path = tmp_path_factory.mktemp("align3d_cache")
    os.environ["ALIGN3D_CACHE"] = str(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return path


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated dataset in the real MVTec 3D-AD layout (several categories)."""
    from align3d_rt.data.synthetic import generate_mvtec_layout

    root = tmp_path_factory.mktemp("synthetic_mvtec")
    return generate_mvtec_layout(root, n_train=2, n_test_good=2, n_per_defect=1, seed=0)


@pytest.fixture(scope="session")
def shared_tire_root() -> Path:
    """Real MVTec 3D-AD tire masks and RGB images (no xyz) shipped in ../shared/data."""
    if not SHARED_TIRE.is_dir():
        pytest.skip(f"real tire sample not found at {SHARED_TIRE}: it ships beside the checkout as ../shared")
    return SHARED_TIRE


@pytest.fixture(scope="session")
def signal_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of the trained signal fixture for parity tests (tests/parity_support.py); trains on first use."""
    from parity_support import SIGNAL_SE, signal_run, signal_stats

    root = tmp_path_factory.mktemp("signal")
    signal_run(root)
    stats = signal_stats(root)
    assert stats.point_margin_in_se >= SIGNAL_SE and stats.point_auroc >= 0.6, stats.line()
    return root
