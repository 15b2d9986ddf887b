"""Issue #13 item 5: an evaluation survives bad samples, writes each class when done, and resumes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from infer_eval_support import fake_detector

from align3d_rt.cli import main

CLASSES = ("dome", "box")


@pytest.fixture(scope="module")
def corrupt_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    """A generated MVTec-layout folder with one corrupt test scan per class."""
    from align3d_rt.data.synthetic import generate_mvtec_layout

    root = generate_mvtec_layout(tmp_path_factory.mktemp("corrupt"), categories=list(CLASSES), n_train=1,
                                 n_test_good=3, n_per_defect=1, seed=3)
    bad = {}
    for cat in CLASSES:
        victim = sorted((root / cat / "test" / "good" / "xyz").glob("*.tiff"))[0]
        victim.write_bytes(b"II*\x00 truncated scan")
        bad[cat] = victim
    return root, bad


def _eval(monkeypatch: pytest.MonkeyPatch, root: Path, out: Path, *extra: str, fusion_weight: float = 0.5) -> int:
    from align3d_rt.cli import eval as eval_cli

    det, _ = fake_detector(fusion_weight=fusion_weight,
                           info={"backend": "fake", "run_config": {"dataset": "synthetic", "category": "ring"}})
    monkeypatch.setattr(eval_cli, "build_detector", lambda args: det)
    return main(["eval", "--protocol", "cross-dataset", "--dataset", "synthetic", "--root", str(root),
                 "--run", str(out.parent), "--out", str(out), "--categories", *CLASSES, "--examples", "1", *extra])


def test_corrupt_sample_per_class_is_listed_and_rest_reported(corrupt_root: tuple[Path, dict[str, Path]],
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    root, bad = corrupt_root
    out = tmp_path / "eval"
    assert _eval(monkeypatch, root, out) == 1  # finished, some samples failed
    err = capsys.readouterr().err
    assert "2 sample(s) could not be scored" in err
    data = json.loads((out / "results.json").read_text())
    by = {c["category"]: c for c in data["classes"]}
    assert set(by) == set(CLASSES)
    for cat in CLASSES:
        n_total = len(list((root / cat / "test").glob("*/xyz/*.tiff")))
        assert list(by[cat]["failed"]) == [str(bad[cat])]
        assert by[cat]["failed"][str(bad[cat])].startswith(f"{bad[cat]}: ")
        assert by[cat]["n_samples"] == n_total - 1
        assert by[cat]["metrics"]["O-R"] is not None and by[cat]["metrics"]["P-R"] is not None
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "complete" and man["finished_classes"] == list(CLASSES)
    assert {c: list(f) for c, f in man["failed_samples"].items()} == {c: [str(bad[c])] for c in CLASSES}
    md = (out / "results.md").read_text()
    assert "Failed samples (2" in md and all(str(p) in md for p in bad.values())
    assert (out / "results.csv").read_text().splitlines()[-1].endswith(",2")
    assert (out / "results_contact_sheet.png").is_file()


def test_interrupted_eval_resumes_without_rescoring(corrupt_root: tuple[Path, dict[str, Path]], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from align3d_rt.eval import protocols

    root, _ = corrupt_root
    out = tmp_path / "eval"
    real = protocols.evaluate_class
    scored: list[str] = []

    def interrupted(detector, dataset, root_, cat, **kw):  # noqa: ANN001, ANN003, ANN202
        if cat == "box":
            raise KeyboardInterrupt
        scored.append(cat)
        return real(detector, dataset, root_, cat, **kw)

    monkeypatch.setattr(protocols, "evaluate_class", interrupted)
    assert _eval(monkeypatch, root, out) == 130
    # the finished class is on disk already
    assert [c["category"] for c in json.loads((out / "results.json").read_text())["classes"]] == ["dome"]
    # never "running" once stopped (issue #21)
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"
    capsys.readouterr()
    assert _eval(monkeypatch, root, out) == 2  # a used folder is not silently mixed into
    assert "--resume" in capsys.readouterr().err
    assert _eval(monkeypatch, root, out, "--resume", fusion_weight=0.3) == 2  # other settings: refused
    assert "other settings" in capsys.readouterr().err

    def counting(detector, dataset, root_, cat, **kw):  # noqa: ANN001, ANN003, ANN202
        scored.append(cat)
        return real(detector, dataset, root_, cat, **kw)

    monkeypatch.setattr(protocols, "evaluate_class", counting)
    scored.clear()
    assert _eval(monkeypatch, root, out, "--resume") == 1
    assert scored == ["box"]  # dome was not rescored
    assert "dome: already evaluated" in capsys.readouterr().err
    data = json.loads((out / "results.json").read_text())
    assert [c["category"] for c in data["classes"]] == list(CLASSES)
    assert json.loads((out / "manifest.json").read_text())["status"] == "complete"
    assert (out / "results_contact_sheet.png").is_file()
