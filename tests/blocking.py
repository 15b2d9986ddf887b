"""Run Python code in a child process where some top-level packages cannot be imported."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_PRELUDE = """
import importlib.abc, sys
_BLOCKED = {blocked!r}
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in _BLOCKED:
            raise ImportError(f'{{name}} is blocked in this test')
        return None
sys.meta_path.insert(0, _Block())
"""


def blocked_prelude(*packages: str) -> str:
    """Source that makes importing any of ``packages`` (and their submodules) fail."""
    return _PRELUDE.format(blocked=tuple(packages))


def run_blocked(code: str, *packages: str, args: tuple[str, ...] = (),
                timeout: int = 120) -> subprocess.CompletedProcess:
    """Run ``code`` (dedented) after the blocker, from the repository root, with the tests folder importable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    return subprocess.run([sys.executable, "-c", blocked_prelude(*packages) + textwrap.dedent(code), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
