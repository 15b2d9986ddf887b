"""Options of the pytest-benchmark suite under bench/: ``--clip`` picks the CLIP architecture of the
random-weights run the backend benchmarks time (default align3d-tiny: fast; ViT-L-14-336 for the real
architecture), ``--bench-workdir`` keeps exported bundles and clouds between runs."""
from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("align3d bench")
    group.addoption("--clip", default="align3d-tiny",
                    help="CLIP architecture of the benchmarked random run (default align3d-tiny; ViT-L-14-336 for "
                         "the real one)")
    group.addoption("--bench-workdir", default=None, type=Path,
                    help="keep exported bundles and generated clouds here (default: a temporary folder)")


@pytest.fixture(scope="session")
def bench_clip(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--clip"))


@pytest.fixture(scope="session")
def bench_workdir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, bench_clip: str) -> Path:
    given = request.config.getoption("--bench-workdir")
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        return given
    return tmp_path_factory.mktemp(f"bench_{bench_clip}")
