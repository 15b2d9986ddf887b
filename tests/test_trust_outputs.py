"""Issue #21, families 1 and 5 (Python side): --overwrite deletes only what our earlier run wrote; concurrent
exports never lose a bundle silently; N inputs give N results under one unique-key rule."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from infer_eval_support import bump_cloud, shared_tiny_run

from align3d_rt.cli import main
from align3d_rt.cli.out_folder import OutputFolder
from align3d_rt.data.files import collect_files, unique_keys
from align3d_rt.errors import Align3DError, BundleError
from align3d_rt.io_utils import foreign_entries, remove_owned


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tiny_run(tmp_path_factory)


def _one_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- family 1: --overwrite deletes only our own earlier output ----------------------------------------------

_PARTS = ("a", "b", "X_", ".a", "a.npy", "scores.json", "0-")


def _random_paths(rng: np.random.Generator, n: int) -> set[str]:
    return {"/".join(rng.choice(_PARTS, size=int(rng.integers(1, 4)))) for _ in range(n)}


@pytest.mark.parametrize("seed", range(40))
def test_foreign_entries_and_remove_owned_property(tmp_path: Path, seed: int) -> None:
    """Random trees of owned and other files (property test, seeded): remove_owned deletes exactly the owned
    files, every other file stays byte for byte, and foreign_entries is empty exactly when nothing else is there."""
    rng = np.random.default_rng(seed)
    owned, other = _random_paths(rng, int(rng.integers(0, 7))), _random_paths(rng, int(rng.integers(0, 7)))
    root = tmp_path / "root"
    root.mkdir()
    written: dict[str, bytes] = {}
    for i, rel in enumerate(sorted(owned | other)):
        path = root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(f"{i}".encode())
        except (IsADirectoryError, FileExistsError, NotADirectoryError):
            continue  # one name is a folder of the other: not both can exist
        written[rel] = path.read_bytes()
    mine = {r for r in owned if r in written}
    foreign = foreign_entries(root, mine)
    assert not set(foreign) & mine
    assert (not foreign) == (set(written) <= mine)
    remove_owned(root, mine)
    left = _tree(root)
    assert set(left) == set(written) - mine
    assert all(left[r] == written[r] for r in left)


def test_atomic_leftovers_of_our_files_are_ours(tmp_path: Path) -> None:
    (tmp_path / "a.scores.npy").write_bytes(b"1")
    (tmp_path / ".a.scores.k2j3.npy").write_bytes(b"half")  # atomic_path's temporary after a kill
    (tmp_path / ".a.scores.npy.bak").write_bytes(b"user")  # not a temporary of ours
    assert foreign_entries(tmp_path, {"a.scores.npy"}) == [".a.scores.npy.bak"]


def _infer(tiny_run: Path, out: Path, *files: Path, extra: tuple[str, ...] = ()) -> int:
    return main(["infer", *map(str, files), "--run", str(tiny_run), "--out", str(out), "--no-png", *extra])


def test_infer_overwrite_never_deletes_user_files(tiny_run: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A folder with an earlier result plus the user's files and subfolders: --overwrite refuses and deletes
    nothing; with only our files it replaces exactly them."""
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, bump_cloud(10, seed=1).points)
    np.save(b, bump_cloud(10, seed=2).points)
    out = tmp_path / "out"
    assert _infer(tiny_run, out, a, b) == 0
    (out / "notes.txt").write_text("mine")
    (out / "mine").mkdir()
    (out / "mine" / "keep.npy").write_bytes(b"precious")
    (out / "empty_folder").mkdir()
    capsys.readouterr()
    before = _tree(out)
    assert _infer(tiny_run, out, a, extra=("--overwrite",)) == 2
    _one_line(capsys, str(out), "did not write", "--overwrite")
    assert _tree(out) == before and (out / "empty_folder").is_dir()
    for p in ("notes.txt", "mine/keep.npy"):
        (out / p).unlink()
    (out / "mine").rmdir()
    (out / "empty_folder").rmdir()
    assert _infer(tiny_run, out, a, extra=("--overwrite",)) == 0
    assert sorted(json.loads((out / "scores.json").read_text())["samples"]) == ["a"]
    assert not list(out.glob("b.*"))  # the earlier run's own files went


def test_infer_records_files_before_writing_them(tiny_run: Path, tmp_path: Path) -> None:
    """A run stopped while writing a sample: its files are listed ("pending"), so --overwrite may delete them."""
    a = tmp_path / "a.npy"
    np.save(a, bump_cloud(10, seed=1).points)
    out = tmp_path / "out"
    out.mkdir()
    (out / "scores.json").write_text(json.dumps({"detector": {}, "samples": {}, "failed": {},
                                                 "pending": {"x": {"outputs": {"scores": "x.scores.npy"}}}}))
    (out / "x.scores.npy").write_bytes(b"half")
    assert _infer(tiny_run, out, a, extra=("--overwrite",)) == 0
    assert not (out / "x.scores.npy").exists()
    assert "pending" not in json.loads((out / "scores.json").read_text())


def test_output_folder_names_outside_are_never_ours(tmp_path: Path) -> None:
    """A scores.json that names files outside the folder (../x, a/b) does not make them deletable."""
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / "scores.json").write_text(json.dumps({"detector": {}, "failed": {}, "samples": {
        "k": {"outputs": {"a": "../victim.txt", "b": "/etc/passwd"}}}}))
    with OutputFolder(out, "infer", overwrite=True):
        pass
    assert victim.read_text() == "keep" and not (out / "scores.json").exists()


def test_eval_overwrite_keeps_user_files(tmp_path: Path) -> None:
    """eval --overwrite empties only manifest.json, the result tables and its two subfolders."""
    out = tmp_path / "e"
    (out / "results_classes").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"protocol": "one-vs-rest", "detector": {}, "status": "complete"}))
    (out / "results.md").write_text("t")
    (out / "results_classes" / "bagel.json").write_text("{}")
    (out / "results_classes" / "bagel.examples.npz").write_bytes(b"z")
    (out / "my_notes.md").write_text("mine")
    with pytest.raises(Align3DError, match="did not write .*my_notes.md"):
        OutputFolder(out, "eval", overwrite=True).check()
    assert (out / "results.md").is_file()
    (out / "my_notes.md").unlink()
    with OutputFolder(out, "eval", overwrite=True):
        assert not any(out.iterdir())


def test_failed_start_leaves_no_created_folder(tmp_path: Path) -> None:
    out = tmp_path / "new"
    with pytest.raises(RuntimeError), OutputFolder(out, "infer"):
        raise RuntimeError("start-up failed")
    assert not out.exists()


def test_export_overwrite_keeps_user_files_in_a_bundle(tiny_run: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "bundle"
    assert main(["export", "--run", str(tiny_run), "--out", str(bundle)]) == 0
    (bundle / "README-mine.txt").write_text("mine")
    capsys.readouterr()
    assert main(["export", "--run", str(tiny_run), "--out", str(bundle), "--overwrite"]) == 2
    _one_line(capsys, str(bundle), "README-mine.txt", "never deleted")
    assert (bundle / "README-mine.txt").read_text() == "mine" and (bundle / "manifest.json").is_file()


def test_two_exports_into_one_new_out_never_lose_a_bundle_silently(tmp_path: Path) -> None:
    """The second of two stagings onto the same new path fails with one line; the first's bundle stays."""
    from align3d_rt.artifacts.bundle import staged_directory

    final = tmp_path / "bundle"
    first, second = staged_directory(final), staged_directory(final)
    stage1, stage2 = first.__enter__(), second.__enter__()
    (stage1 / "manifest.json").write_text(json.dumps({"format": "x", "files": {}, "who": 1}))
    (stage2 / "manifest.json").write_text(json.dumps({"format": "x", "files": {}, "who": 2}))
    first.__exit__(None, None, None)
    with pytest.raises(BundleError, match="another run meanwhile") as err:
        second.__exit__(None, None, None)
    assert "\n" not in str(err.value)
    assert json.loads((final / "manifest.json").read_text())["who"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging folder left


def test_staging_onto_an_empty_folder_another_run_filled(tmp_path: Path) -> None:
    from align3d_rt.artifacts.bundle import staged_directory

    final = tmp_path / "bundle"
    final.mkdir()
    ctx = staged_directory(final)
    stage = ctx.__enter__()
    (stage / "manifest.json").write_text("{}")
    (final / "theirs.txt").write_text("theirs")  # appeared meanwhile
    with pytest.raises(BundleError):
        ctx.__exit__(None, None, None)
    assert (final / "theirs.txt").read_text() == "theirs"


# ---- family 5: unique keys, N inputs give N results ---------------------------------------------------------

def test_unique_keys_examples() -> None:
    assert unique_keys(["a", "a", "a_1"]) == ["a", "a_1", "a_1_1"]
    assert unique_keys(["a_1", "a", "a"]) == ["a_1", "a", "a_2"]
    assert unique_keys(["a", "a", "a"]) == ["a", "a_1", "a_2"]


@pytest.mark.parametrize("seed", range(50))
def test_unique_keys_property(seed: int) -> None:
    """Random key lists (seeded): always unique, same length, each key is its input or the input plus _N."""
    rng = np.random.default_rng(seed)
    keys = [str(k) for k in rng.choice(["a", "a_1", "a_2", "b", "a_1_1", "b_1"], size=int(rng.integers(0, 13)))]
    out = unique_keys(keys)
    assert len(out) == len(keys) and len(set(out)) == len(out)
    for given_key, key in zip(keys, out, strict=True):
        assert key == given_key or (key.startswith(given_key + "_") and key[len(given_key) + 1:].isdigit())
    for i, k in enumerate(keys):
        if k not in keys[:i] and k not in out[:i]:
            assert out[i] == k


def test_colliding_names_give_one_result_each(tiny_run: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """a.npy, a.ply, a_1.npy, dir1/a.npy, dir2/a.npy, and two folders called x: every input is one result."""
    pts = bump_cloud(10, seed=3).points
    files = []
    for rel in ("a.npy", "a_1.npy", "dir1/a.npy", "dir2/a.npy", "p/x/a.npy", "q/x/a.npy"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / rel, pts)
        files.append(tmp_path / rel)
    import open3d as o3d

    o3d.io.write_point_cloud(str(tmp_path / "a.ply"), o3d.geometry.PointCloud(
        o3d.utility.Vector3dVector(pts.astype(np.float64))))
    inputs = [tmp_path / "a.npy", tmp_path / "a.ply", tmp_path / "a_1.npy", tmp_path / "dir1/a.npy",
              tmp_path / "dir2/a.npy", tmp_path / "p/x", tmp_path / "q/x"]
    keys = [k for _, k in collect_files(inputs)]
    assert len(keys) == len(set(keys)) == 7
    out = tmp_path / "out"
    assert _infer(tiny_run, out, *inputs) == 0
    samples = json.loads((out / "scores.json").read_text())["samples"]
    assert len(samples) == 7 and sorted(samples) == sorted(keys)
    assert len({s["file"] for s in samples.values()}) == 7
    assert "scored 7 sample(s), 0 failed" in capsys.readouterr().err


def test_infer_out_inside_the_bundle_is_refused(tiny_run: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Python refuses the bundle's folder (and a folder inside it) as --out, as align3d-inspect does."""
    bundle = tmp_path / "bundle"
    assert main(["export", "--run", str(tiny_run), "--out", str(bundle)]) == 0
    a = tmp_path / "a.npy"
    np.save(a, bump_cloud(10, seed=1).points)
    before = _tree(bundle)
    capsys.readouterr()
    for out, extra in ((bundle, ("--overwrite",)), (bundle / "scores", ())):
        assert main(["infer", str(a), "--bundle", str(bundle), "--out", str(out), *extra]) == 2
        _one_line(capsys, str(out), "bundle's folder")
    assert _tree(bundle) == before and not (bundle / "scores").exists()


def test_calibration_file_written_meanwhile_is_not_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two calibrate runs into one new --out: the one that finishes second fails; the first file stays."""
    import align3d_rt.io_utils as io_utils

    target = tmp_path / "cal.json"
    real = io_utils.rename_noreplace

    def other_run_first(src: object, dst: object) -> None:
        Path(str(dst)).write_text("first")  # another run finished just before this one
        real(src, dst)

    monkeypatch.setattr(io_utils, "rename_noreplace", other_run_first)
    with pytest.raises(FileExistsError):
        io_utils.write_text_atomic(target, "second", replace=False)
    assert target.read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["cal.json"]


def test_reserved_keys_are_taken_from_the_start() -> None:
    """infer --html writes index.html: a cloud called index.npy gets key index_1, never the index page's name."""
    assert unique_keys(["index", "a", "index"], reserved=("index",)) == ["index_1", "a", "index_2"]
    assert unique_keys(["index"]) == ["index"]


def test_render_and_synth_never_overwrite_user_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """render writes view_00.png...: into a folder holding the user's view_00.png it refuses; --overwrite
    replaces only an earlier render; synth wants a new or empty folder."""
    src = tmp_path / "c.npy"
    np.save(src, bump_cloud(12, seed=1).points)
    out = tmp_path / "views"
    out.mkdir()
    (out / "view_00.png").write_bytes(b"my holiday photo")
    argv = ["render", str(src), "--preset", "mvtec9", "--image-size", "32", "--out", str(out)]
    for extra in ((), ("--overwrite",)):
        assert main([*argv, *extra]) == 2
        _one_line(capsys, str(out))
        assert (out / "view_00.png").read_bytes() == b"my holiday photo"
    (out / "view_00.png").unlink()
    assert main(argv) == 0 and (out / "correspondences.npz").is_file()
    first = (out / "view_00.png").read_bytes()
    assert main(argv) == 2  # an earlier render: only with --overwrite
    capsys.readouterr()
    assert main([*argv, "--overwrite"]) == 0 and (out / "view_00.png").read_bytes() == first
    data = tmp_path / "data"
    data.mkdir()
    (data / "dome").mkdir()
    (data / "dome" / "mine.txt").write_text("x")
    capsys.readouterr()
    assert main(["synth", "--out", str(data), "--categories", "dome", "--n-train", "1"]) == 2
    _one_line(capsys, str(data), "not empty")
    assert sorted(p.name for p in (data / "dome").iterdir()) == ["mine.txt"]


def test_a_run_that_loses_the_lock_leaves_the_new_folder_to_the_winner(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Two runs racing into one new --out: this run creates it, the other locks it first (here: the lock is
    held by another open file when this run asks). This run fails with the lock message and must not
    remove the folder, which the other run is about to write into (as the C++ OutputFolder, cpp/tests)."""
    import fcntl
    import os

    from align3d_rt.cli import out_folder
    from align3d_rt.errors import Align3DError

    out = tmp_path / "new"
    real_flock = fcntl.flock
    other: list[int] = []

    def other_run_locks_first(fd: int, op: int) -> None:
        if not other:  # between this run's mkdir and its flock, the other run takes the lock
            other.append(os.open(out, os.O_RDONLY | os.O_DIRECTORY))
            real_flock(other[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        real_flock(fd, op)

    monkeypatch.setattr(out_folder.fcntl, "flock", other_run_locks_first)
    with pytest.raises(Align3DError, match="another align3d-rt run is writing this output folder"):
        with out_folder.OutputFolder(out, "infer"):
            pass
    assert out.is_dir()  # left to the other run
    os.close(other[0])
    monkeypatch.setattr(out_folder.fcntl, "flock", real_flock)
    out.rmdir()
    with pytest.raises(RuntimeError, match="failed start"):  # created, locked, nothing written: removed again
        with out_folder.OutputFolder(out, "infer"):
            raise RuntimeError("failed start")
    assert not out.exists()
