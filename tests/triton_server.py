"""Start the tritonserver that nvidia-pytriton bundles on a model repository (loopback, free ports), for tests.

The server runs from ``.venv-triton`` (made by scripts/setup.sh from Debian's /usr/bin/python3: the
Python-backend stub fails under pyenv's Python). It is started directly on OUR repository (not
through pytriton's own model store), with the Python backend assembled the way pytriton does it:
the backend folder plus the stub built for the venv's Python version.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRITON_VENV = Path(os.environ.get("ALIGN3D_TRITON_VENV", REPO / ".venv-triton"))


def pytriton_dir() -> Path | None:
    """The pytriton package folder inside the Triton venv (None when the venv or pytriton is missing)."""
    found = sorted(TRITON_VENV.glob("lib/python3*/site-packages/pytriton/tritonserver/bin/tritonserver"))
    return found[0].parents[2] if found else None


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bound, read, released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGINT (Triton unloads its models), then SIGKILL of the process group after ``timeout``."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_server(repository: Path, work: Path, numba_cache: Path, ready_timeout: float = 240.0,
                 extra_args: tuple[str, ...] = (), wait_for: str = "ready") -> Server:
    """Start tritonserver on ``repository``; returns once /v2/health/<wait_for> answers 200 (or raises with the log)."""
    pkg = pytriton_dir()
    if pkg is None:
        raise FileNotFoundError(f"{TRITON_VENV}: no pytriton tritonserver (run scripts/setup.sh)")
    backends = work / "backends"
    shutil.copytree(pkg / "tritonserver" / "backends", backends, dirs_exist_ok=True)
    venv_python = next(TRITON_VENV.glob("lib/python3*")).name.removeprefix("python")  # e.g. '3.11'
    shutil.copy(pkg / "tritonserver" / "python_backend_stubs" / venv_python / "triton_python_backend_stub",
                backends / "python" / "triton_python_backend_stub")
    http_port, grpc_port, metrics_port = free_ports(3)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ":".join(filter(None, [str(pkg.parent / "nvidia_pytriton.libs"),
                                                    env.get("LD_LIBRARY_PATH", "")]))
    env["PATH"] = f"{TRITON_VENV / 'bin'}:{env['PATH']}"  # the stub's Python is the venv's
    env["NUMBA_CACHE_DIR"] = str(numba_cache)
    env.pop("PYTHONPATH", None)
    log_path = work / "tritonserver.log"
    cmd = [str(pkg / "tritonserver" / "bin" / "tritonserver"), f"--model-repository={repository}",
           f"--backend-directory={backends}", f"--http-port={http_port}", f"--grpc-port={grpc_port}",
           f"--metrics-port={metrics_port}", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
           "--allow-metrics=false", "--backend-config=python,stub-timeout-seconds=300", "--exit-timeout-secs=20",
           *extra_args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work, start_new_session=True)
    server = Server(proc, http_port, grpc_port, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tritonserver exited with {proc.returncode}:\n{server.log()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{server.http_url}/v2/health/{wait_for}", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"tritonserver not ready after {ready_timeout:.0f}s:\n{server.log()[-4000:]}")
