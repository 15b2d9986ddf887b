"""``infer --triton``: what goes wrong before any cloud is scored is one line ``URL: problem``, exit 2, and
no output folder; the choice of --run/--bundle/--triton is checked. (Served requests: test_triton_loopback.)"""
from __future__ import annotations

import socket
import time
from pathlib import Path

import numpy as np
import pytest

from align3d_rt.cli import main

pytest.importorskip("tritonclient.grpc", reason="tritonclient is in requirements.txt")


@pytest.fixture()
def cloud(tmp_path: Path) -> Path:
    path = tmp_path / "c.npy"
    np.save(path, np.random.default_rng(0).standard_normal((100, 3)).astype(np.float32))
    return path


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    return port


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_unreachable_server_is_one_line_after_bounded_retries(scheme: str, cloud: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    url = f"{scheme}://127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    rc = main(["infer", "--triton", url, "--retries", "2", "--timeout", "5", "--out", str(tmp_path / "o"), str(cloud)])
    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"align3d-rt infer: error: {url}: no answer from the server after 3 tries")
    assert "Traceback" not in err and not (tmp_path / "o").exists()
    assert elapsed < 30  # 3 refused connections and 0.5 s + 1 s of backoff, not a hang


@pytest.mark.parametrize("scheme, says", [("http", "timed out"), ("grpc", "Deadline Exceeded")])
def test_a_server_that_never_answers_times_out_as_one_line(scheme: str, says: str, cloud: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A port that accepts connections and never answers: every wait ends at --timeout, retries are bounded."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"{scheme}://127.0.0.1:{silent.getsockname()[1]}"
        t0 = time.perf_counter()
        rc = main(["infer", "--triton", url, "--retries", "1", "--timeout", "1", "--out", str(tmp_path / "o"),
                   str(cloud)])
        elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == (f"align3d-rt infer: error: {url}: no answer from the server after 2 tries with a "
                               f"1s timeout ({says})"), err
    assert 1.5 < elapsed < 20 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, message", [
    (["--triton", "localhost:8000"], "localhost:8000: expected http://HOST:PORT or grpc://HOST:PORT"),
    (["--triton", "ftp://h:1"], "ftp://h:1: expected http://HOST:PORT"),
    (["--triton", "http://h:1", "--bundle", "b"], "give one of --run, --bundle or --triton (got --bundle, --triton)"),
    ([], "give one of --run, --bundle or --triton"),
    (["--triton", "http://h:1", "--backend", "onnxruntime"], "--backend: the Triton server's repository fixes"),
    (["--triton", "http://h:1", "--scoring", "reference"], "--scoring and its weights: the Triton server"),
    (["--triton", "http://h:1", "--timeout", "0"], "argument --timeout: must be a finite number > 0"),
])
def test_bad_triton_choices_are_one_line(argv: list[str], message: str, cloud: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["infer", *argv, "--out", str(tmp_path / "o"), str(cloud)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_a_server_that_goes_away_mid_run_ends_it_after_bounded_retries() -> None:
    """Refused connections while scoring: retried (bounded), then ServerUnavailable (the CLI's one line, exit 2)."""
    import tritonclient.http as http

    from align3d_rt.data.sample import PointCloudSample
    from align3d_rt.serving.triton_client import ServerUnavailable, TritonScorer

    class Gone:
        calls = 0

        def infer(self, *args: object, **kwargs: object) -> None:
            Gone.calls += 1
            raise ConnectionRefusedError(111, "Connection refused")

        def close(self) -> None:
            pass

    detector = TritonScorer("http://127.0.0.1:9", retries=2, backoff=0.01)
    detector._client, detector._lib = Gone(), http  # as connect() leaves them
    sample = PointCloudSample(points=np.zeros((10, 3), np.float32), source="a.npy")
    with pytest.raises(ServerUnavailable, match=r"^http://127.0.0.1:9: no answer from the server after 3 tries "
                                                r"with a 60s timeout \(\[Errno 111\] Connection refused\)$"):
        detector.score_sample(sample)
    assert Gone.calls == 3
