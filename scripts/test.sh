#!/usr/bin/env bash
# Install everything (Debian packages, venv, Python packages) and run the default test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m heavy` for the heavy checks.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$PWD/.venv/numba-cache}
# The architecture contract (pyproject.toml [tool.importlinter]): layers only point down.
.venv/bin/lint-imports --no-cache
# Lint and types (pyproject.toml [tool.ruff], [tool.mypy]): ruff on every .py here, mypy on the package.
.venv/bin/ruff check .
.venv/bin/mypy
# Default: everything but the heavy checks, unless the caller picks a marker expression with -m.
case " $* " in *" -m "*) ;; *) set -- -m "not heavy" "$@" ;; esac
exec .venv/bin/python -m pytest -q "$@"
