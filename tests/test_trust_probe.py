"""Issue #21 hostile-tester findings (probe of the merged trust fixes): each case failed before its fix.

- JSON files the tool reads (calibration, bundle manifest, run config, scores.json of an --out folder,
  Triton marker, checkpoint record) that are nested too deeply or are too large: one line, exit 2,
  never a RecursionError traceback or a read of a gigabyte into memory.
"""
from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infer_eval_support import bump_cloud

from align3d_rt import io_utils
from align3d_rt.cli import main
from align3d_rt.errors import Align3DError

DEEP = "[" * 100_000 + "]" * 100_000


def _one_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    lines = [ln for ln in capsys.readouterr().err.strip().splitlines()
             if not ln.startswith("align3d_rt: onnxruntime:") and "sample/s]" not in ln]
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _load_calibration(folder: Path) -> None:
    from align3d_rt.artifacts.calibration import load_calibration

    load_calibration(folder / "cal.json")


def _load_bundle(folder: Path) -> None:
    from align3d_rt.artifacts.bundle import load_bundle

    load_bundle(folder)


def _read_config(folder: Path) -> None:
    from align3d_rt.artifacts.run_dir import read_config

    read_config(folder)


JSON_READERS: list[tuple[str, str, Callable[[Path], None]]] = [
    ("calibration", "cal.json", _load_calibration),
    ("bundle manifest", "manifest.json", _load_bundle),
    ("run config", "config.json", _read_config),
]


@pytest.mark.parametrize("what, name, read", JSON_READERS, ids=[w for w, _, _ in JSON_READERS])
@pytest.mark.parametrize("content, problem", [(DEEP, "nested too deeply"), (None, "larger than")],
                         ids=["deep", "huge"])
def test_json_files_too_deep_or_too_large_are_one_line_errors(what: str, name: str, read: Callable[[Path], None],
                                                               content: str | None, problem: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / name
    if content is None:  # a huge file: the limit is lowered so the test stays small
        monkeypatch.setattr(io_utils, "JSON_MAX_BYTES", 1000)
        monkeypatch.setattr(io_utils.read_json, "__defaults__", (1000,))
        content = "{" + " " * 2000 + "}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(Align3DError) as err:
        read(tmp_path)
    assert str(err.value).startswith(str(path)) and problem in str(err.value), err.value
    assert "\n" not in str(err.value)


def test_read_json_reads_at_most_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"a": 1}', encoding="utf-8")
    assert io_utils.read_json(path, max_bytes=8) == {"a": 1}
    with pytest.raises(io_utils.JSONFileError, match="larger than"):
        io_utils.read_json(path, max_bytes=7)


@pytest.mark.parametrize("scores", [DEEP, "[1, 2]", '{"samples": [1, 2], "index": 3}'],
                         ids=["deep", "list", "samples-list"])
def test_infer_overwrite_onto_a_strange_scores_json_is_refused_on_one_line(
        scores: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cloud = tmp_path / "c.npy"
    np.save(cloud, bump_cloud(12, seed=1).points)
    out = tmp_path / "out"
    out.mkdir()
    (out / "scores.json").write_text(scores, encoding="utf-8")
    rc = main(["infer", str(cloud), "--bundle", str(tmp_path / "no_bundle"), "--out", str(out), "--overwrite"])
    assert rc == 2
    _one_line(capsys, str(out))
    assert (out / "scores.json").read_text(encoding="utf-8") == scores  # never deleted


def test_triton_marker_too_deep_is_not_a_repository(tmp_path: Path) -> None:
    from align3d_rt.artifacts import triton_layout as layout
    from align3d_rt.serving.triton_repository import is_repository, repository_files

    (tmp_path / layout.MARKER_NAME).write_text(DEEP, encoding="utf-8")
    assert not is_repository(tmp_path) and repository_files(tmp_path) == set()


IGNORED_EXPORT_OPTIONS = [
    (["--calibration", "cal.json"], "--calibration: read only with --format triton"),
    (["--triton-name", "foo"], "--triton-name: read only with --format triton"),
    (["--triton-gpu"], "--triton-gpu: read only with --format triton"),
    (["--triton-encoder", "python"], "--triton-encoder: read only with --format triton"),
    (["--triton-instances", "3"], "--triton-instances: read only with --format triton"),
    (["--triton-engine-key", "k"], "--triton-engine-key: read only with --format triton"),
    (["--workspace-gb", "2"], "--workspace-gb: read only with --tensorrt"),
    (["--min-batch", "2"], "--min-batch: read only with --tensorrt"),
    (["--max-batch", "36"], "--max-batch: read only with --tensorrt"),
    (["--format", "openvino", "--triton-threads", "2"], "--triton-threads: read only with --format triton"),
]


@pytest.mark.parametrize("extra, problem", IGNORED_EXPORT_OPTIONS, ids=[" ".join(e) for e, _ in IGNORED_EXPORT_OPTIONS])
def test_export_refuses_options_it_would_ignore(extra: list[str], problem: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "b"), *extra])
    assert rc == 2
    _one_line(capsys, problem, "would ignore")
    assert not (tmp_path / "b").exists()


FOREIGN_OUT = [  # (command argv before --out, entries the user had)
    (["demo", "--quick"], {"report.md": "mine"}),
    (["demo", "--quick"], {"manifest.json": "{}", "notes.txt": "mine"}),
    (["demo", "--quick"], {"data/x.txt": "mine"}),
    (["bench", "--samples", "1"], {"bench.md": "mine"}),
    (["bench", "--samples", "1"], {"bench.json": "{}", "notes.txt": "mine"}),
]


@pytest.mark.parametrize("argv, entries", FOREIGN_OUT, ids=[f"{a[0]}:{','.join(e)}" for a, e in FOREIGN_OUT])
def test_demo_and_bench_never_write_into_a_folder_they_did_not_write(
        argv: list[str], entries: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    for name, text in entries.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
    assert main([argv[0], "--out", str(out), *argv[1:]]) == 2
    _one_line(capsys, str(out), f"not an align3d-rt {argv[0]} output", "never overwritten")
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == set(entries)
    assert all((out / n).read_text(encoding="utf-8") == t for n, t in entries.items())


@pytest.mark.parametrize("command, entries", [
    ("demo", ["data/.demo_data.json", "run/config.json", "eval_torch/manifest.json", "bundle_fp32/manifest.json"]),
    ("bench", ["bench.json", "bench.md", "logs/row.log", "work/clouds/a.npy"]),
    ("bench", ["logs/row.log", "work/clouds/a.npy"]),  # interrupted before its first row: resumes
])
def test_demo_and_bench_resume_from_their_own_output(command: str, entries: list[str], tmp_path: Path) -> None:
    from align3d_rt.cli.bench import BENCH_ENTRIES, BENCH_MARKERS
    from align3d_rt.cli.demo import DEMO_ENTRIES, DEMO_MARKERS
    from align3d_rt.cli.out_folder import check_resumable_out

    for name in entries:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x", encoding="utf-8")
    names, markers = (DEMO_ENTRIES, DEMO_MARKERS) if command == "demo" else (BENCH_ENTRIES, BENCH_MARKERS)
    check_resumable_out(tmp_path, command, names, markers)  # no error


@pytest.mark.parametrize("product", ["a\nb", "tab\there", "\x1b[31mred", "x" * 201],
                         ids=["newline", "tab", "escape", "long"])
def test_calibrate_product_is_one_printable_line(product: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    cloud = tmp_path / "c.npy"
    np.save(cloud, bump_cloud(12, seed=1).points)
    rc = main(["calibrate", "--bundle", str(tmp_path / "b"), "--good", str(cloud), "--product", product,
               "--out", str(tmp_path / "cal.json")])
    assert rc == 2
    _one_line(capsys, "--product", "printable")
    assert not (tmp_path / "cal.json").exists()


EVAL_CHECKED_BEFORE_SCORING = [
    (["--calibrate-on", "train", "--target-false-reject", "0"], "--target-false-reject 0.0: must be in (0, 1)"),
    (["--calibrate-on", "train", "--target-false-reject", "nan"], "--target-false-reject nan: must be in (0, 1)"),
    (["--calibrate-on", "train", "--target-false-reject", "1"], "--target-false-reject 1.0: must be in (0, 1)"),
    (["--categories", "dome", "ring", "dome"], "--categories: dome given more than once"),
]


@pytest.mark.parametrize("extra, problem", EVAL_CHECKED_BEFORE_SCORING,
                         ids=[" ".join(e) for e, _ in EVAL_CHECKED_BEFORE_SCORING])
def test_eval_refuses_bad_choices_before_any_scoring(extra: list[str], problem: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import align3d_rt.cli.eval as eval_cli

    def no_detector(args: object) -> None:
        raise AssertionError("a detector was built before the options were checked")

    monkeypatch.setattr(eval_cli, "build_detector", no_detector)
    (tmp_path / "root").mkdir()
    rc = main(["eval", "--protocol", "cross-dataset", "--dataset", "mvtec3d", "--root", str(tmp_path / "root"),
               "--bundle", str(tmp_path / "b"), "--out", str(tmp_path / "o"), *extra])
    assert rc == 2
    line = _one_line(capsys, problem)
    assert str(tmp_path / "root") not in line  # the option is the problem, not a dataset folder
    assert not (tmp_path / "o").exists()


def test_eval_root_that_is_a_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "root").write_text("x")
    assert main(["eval", "--dataset", "mvtec3d", "--root", str(tmp_path / "root"), "--bundle", str(tmp_path / "b"),
                 "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys, f"{tmp_path / 'root'}: dataset root is not a folder")


UNCHECKED_BEFORE = [  # (argv, words of the one line): each was a MemoryError/RuntimeError traceback or silently ignored
    (["render", "c.npy", "--out", "o", "--image-size", "100000"],
     "argument --image-size: must be an integer from 8 to 4096"),
    (["train", "--dataset", "synthetic", "--root", "r", "--category", "dome", "--out", "o", "--image-size", "5000"],
     "argument --image-size: must be an integer from 8 to 4096"),
    (["train", "--dataset", "synthetic", "--root", "r", "--category", "dome", "--out", "o", "--device", "tpu"],
     "argument --device: must be auto, cpu, cuda or cuda:N"),
    (["synth", "--out", "o", "--size", "100000x100000"], "--size: scans hold at most"),
    (["synth", "--out", "o", "--categories", ","], "--categories ',': names no category"),
    (["render", "c.npy", "--out", "o", "--category", "bagel"], "--category 'bagel': needs --dataset"),
    (["render", "c.npy", "--out", "o", "--dataset", "mvtec3d", "--category", "bagle"], "not a mvtec3d category"),
]


@pytest.mark.parametrize("argv, problem", UNCHECKED_BEFORE, ids=[" ".join(a[:1] + a[-2:]) for a, _ in UNCHECKED_BEFORE])
def test_options_checked_on_one_line_before_any_work(argv: list[str], problem: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "c.npy", bump_cloud(12, seed=1).points)
    assert main(argv) == 2
    _one_line(capsys, problem)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_train_device_forms_that_work(device: str) -> None:
    from align3d_rt.cli.train import train_device

    assert train_device(device) == device


EMPTY_ARGUMENTS = [  # argparse made each "" the current folder: infer "" scored every file below it
    (["infer", "", "--bundle", "b", "--out", "o"], "a path argument: empty value"),
    (["infer", "c.npy", "--bundle", "b", "--out", ""], "argument --out: empty value"),
    (["infer", "c.npy", "--bundle", "b", "--out="], "argument --out: empty value"),
    (["infer", "c.npy", "--bundle", "", "--out", "o"], "argument --bundle: empty value"),
    (["calibrate", "--bundle", "b", "--good", "", "--product", "p", "--out", "c.json"], "argument --good: empty value"),
    (["eval", "--dataset", "mvtec3d", "--root", "", "--bundle", "b", "--out", "o"], "argument --root: empty value"),
    (["export", "--run", "", "--out", "o"], "argument --run: empty value"),
]


@pytest.mark.parametrize("argv, problem", EMPTY_ARGUMENTS, ids=[" ".join(a) for a, _ in EMPTY_ARGUMENTS])
def test_empty_arguments_are_refused_not_read_as_the_current_folder(argv: list[str], problem: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "c.npy", bump_cloud(12, seed=1).points)
    assert main(argv) == 2
    _one_line(capsys, problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npy"]


@pytest.mark.parametrize("kind", ["fifo", "folder-link"])
def test_calibration_that_is_not_a_regular_file_is_refused_without_blocking(kind: str, tmp_path: Path) -> None:
    import os

    from align3d_rt.artifacts.calibration import load_calibration

    path = tmp_path / "cal.json"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    else:
        (tmp_path / "d").mkdir()
        path.symlink_to(tmp_path / "d")
    with pytest.raises(Align3DError) as err:
        load_calibration(path)
    assert str(err.value).startswith(f"{path}: unreadable calibration"), err.value


@pytest.mark.parametrize("kind", ["fifo", "oversize", "deep"])
def test_cpp_inspector_refuses_the_same_calibration_files_with_the_same_line(
        kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import subprocess

    import cpp_build

    if missing := cpp_build.missing_tools():
        pytest.skip(f"no C++ toolchain here ({', '.join(missing)})")
    tool = cpp_build.build("cpp") / "cpp" / "align3d-inspect"
    cloud = tmp_path / "c.npy"
    np.save(cloud, bump_cloud(12, seed=1).points)
    cal = tmp_path / "cal.json"
    if kind == "fifo":
        os.mkfifo(cal)
    elif kind == "oversize":
        with open(cal, "wb") as f:
            f.truncate((64 << 20) + 1)  # sparse: no disk used
    else:
        cal.write_text(DEEP, encoding="utf-8")
    proc = subprocess.run([str(tool), str(tmp_path / "no_bundle"), str(cloud), "--calibration", str(cal), "--out",
                           str(tmp_path / "c")], capture_output=True, text=True, timeout=60)
    capsys.readouterr()
    assert main(["infer", str(cloud), "--bundle", str(tmp_path / "no_bundle"), "--calibration", str(cal), "--out",
                 str(tmp_path / "p")]) == 2
    py_line = _one_line(capsys).removeprefix("align3d-rt infer: error: ")
    assert proc.returncode == 2 and proc.stderr.strip().startswith(f"{cal}: "), proc.stderr
    if kind != "deep":  # nlohmann parses any depth: C++ then says the object is not a calibration
        assert proc.stderr.strip() == py_line
    assert not (tmp_path / "c").exists() and not (tmp_path / "p").exists()


@pytest.mark.parametrize("where", ["bundle", "cloud", "--out", "--calibration"])
def test_cpp_inspector_refuses_empty_arguments_like_python(where: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    import cpp_build

    if missing := cpp_build.missing_tools():
        pytest.skip(f"no C++ toolchain here ({', '.join(missing)})")
    tool = cpp_build.build("cpp") / "cpp" / "align3d-inspect"
    cloud = tmp_path / "c.npy"
    np.save(cloud, bump_cloud(12, seed=1).points)
    bundle, clouds, out = str(tmp_path / "b"), [str(cloud)], str(tmp_path / "o")
    extra: list[str] = []
    if where == "bundle":
        bundle = ""
    elif where == "cloud":
        clouds = [str(cloud), ""]
    elif where == "--out":
        out = ""
    else:
        extra = ["--calibration", ""]
    proc = subprocess.run([str(tool), bundle, *clouds, "--out", out, *extra], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert main(["infer", *clouds, "--bundle", bundle, "--out", out, *extra]) == 2
    py_line = _one_line(capsys).removeprefix("align3d-rt: error: ")
    cpp_line = proc.stderr.strip()
    assert proc.returncode == 2 and py_line.endswith("empty value (an unset shell variable?)"), (cpp_line, py_line)
    # the same line, except that the bundle is a positional argument of align3d-inspect (--bundle of infer)
    assert cpp_line == (py_line if where != "bundle" else "a path argument: empty value (an unset shell variable?)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npy"]


@pytest.mark.parametrize("value", ["1025", "100000"])
def test_threads_beyond_any_machine_are_refused_in_python_and_cpp(value: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    import cpp_build

    assert main(["infer", "c.npy", "--bundle", "b", "--out", str(tmp_path / "o"), "--threads", value]) == 2
    _one_line(capsys, f"argument --threads: must be an integer from 1 to 1024, got '{value}'")
    if missing := cpp_build.missing_tools():
        pytest.skip(f"no C++ toolchain here ({', '.join(missing)})")
    tool = cpp_build.build("cpp") / "cpp" / "align3d-inspect"
    proc = subprocess.run([str(tool), "b", "c.npy", "--out", str(tmp_path / "o"), "--threads", value],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode == 2
            and proc.stderr.strip() == f"--threads: must be an integer from 1 to 1024, got '{value}'")
    assert not (tmp_path / "o").exists()
