"""Result pages (align3d_rt.eval.page, ``infer --html``): self-contained, data round-trips, index order."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from result_page_support import decode, embedded_data, planted_part

from align3d_rt.errors import Align3DError
from align3d_rt.eval.page import write_index_page, write_part_page
from align3d_rt.eval.page.assets import THREE_JS, THREE_LICENSE, read_asset

REPO = Path(__file__).resolve().parents[1]


class _Refs(HTMLParser):
    """Every src/href value, and the attributes of every <script>."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.refs += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "script":
            self.scripts.append(dict(attrs))


def _refs(text: str) -> _Refs:
    parser = _Refs()
    parser.feed(text)
    return parser


def _write(tmp_path: Path, part: dict, views: object = None, **kw: object) -> tuple[Path, str]:
    planted = planted_part()
    if views is None:
        views = np.full((9, 48, 48, 3), 255, np.uint8)
        views[:, 10:30, 10:30] = (200, 40, 40)
    page = write_part_page(tmp_path / "part.html", key="part", points=planted.points,
                           scores=kw.pop("scores", planted.normalized), region_labels=kw.pop("labels", planted.labels),
                           part=part, views=views, **kw)
    return page, page.read_text(encoding="utf-8")


def test_page_is_self_contained(tmp_path: Path) -> None:
    page, text = _write(tmp_path, planted_part().part)
    refs = _refs(text)
    assert refs.refs, "the views are images with src"
    assert not [r for r in refs.refs if re.match(r"\s*(https?:)?//", r, re.I)], "no network reference"
    assert all(r.startswith("data:image/png;base64,") for r in refs.refs)
    assert all("src" not in s for s in refs.scripts), "every script inline"
    assert "<link" not in text.lower()
    assert read_asset(THREE_JS) in text  # three.js inlined whole
    revision = read_asset("THREE_VERSION").strip().split(".")[1]  # npm 0.R.x is three.js rR
    assert f'three.js r{revision} ' in read_asset(THREE_JS) and f'"{revision}"' in read_asset(THREE_JS)
    assert len(re.findall(r'<img alt="view \d"', text)) == 9
    assert not list(tmp_path.glob(".*")), "no temporary file left"


def test_vendored_three_and_license_in_the_wheel(tmp_path: Path) -> None:
    lic = read_asset(THREE_LICENSE)
    assert "MIT License" in lic and "three.js authors" in lic
    src = tmp_path / "src"
    shutil.copytree(REPO / "align3d_rt", src / "align3d_rt", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", src / "pyproject.toml")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "wheel"), str(src)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in (THREE_JS, THREE_LICENSE, "part.js", "page.css"):
        assert f"align3d_rt/eval/page/assets/{asset}" in names


def test_part_data_round_trips(tmp_path: Path) -> None:
    planted = planted_part()
    _, text = _write(tmp_path, planted.part)
    data = embedded_data(text)
    assert data["format"] == "align3d_rt.result_page" and data["calibrated"] is True
    assert data["part"] == json.loads(json.dumps(planted.part))
    cloud = data["cloud"]
    rows = decode(cloud["rows"], "<i4")
    np.testing.assert_array_equal(rows, np.arange(len(planted.points)))
    np.testing.assert_array_equal(decode(cloud["points"], "<f4").reshape(-1, 3), planted.points)
    np.testing.assert_array_equal(decode(cloud["scores"], "<f4"), planted.normalized)
    np.testing.assert_array_equal(decode(cloud["labels"], "<i4"), planted.labels)
    assert cloud["score_range"] == [0.0, 1.0] and cloud["score_kind"] == "normalized"
    assert 'id="decision">REJECT<' in text
    table = re.search(r'<table id="regions">(.*?)</table>', text, re.S).group(1)
    assert f"<td>1</td><td>{planted.part['regions'][0]['num_points']}</td>" in table


def test_ok_part_with_regions_says_so(tmp_path: Path) -> None:
    _, text = _write(tmp_path, planted_part(decision="ok").part)
    assert 'id="decision">OK<' in text and "decision ok" in text
    assert "rests on the object score alone" in text


def test_uncalibrated_page_shows_raw_scores(tmp_path: Path) -> None:
    planted = planted_part()
    _, text = _write(tmp_path, {"file": "x.npy", "object_score": 0.7}, scores=planted.raw, labels=None)
    data = embedded_data(text)
    assert data["calibrated"] is False and data["cloud"]["labels"] is None
    assert data["cloud"]["score_range"] == [float(planted.raw.min()), float(planted.raw.max())]
    assert "no calibration: raw scores" in text and "Regions need a calibration" in text


def test_large_cloud_subsampled_keeping_region_points(tmp_path: Path) -> None:
    planted = planted_part()
    n, keep = len(planted.points), 1500
    _, text = _write(tmp_path, planted.part, max_draw_points=keep)
    cloud = embedded_data(text)["cloud"]
    rows = decode(cloud["rows"], "<i4")
    assert cloud["num_points"] == n and cloud["num_drawn"] == keep == rows.size
    assert np.all(np.diff(rows) > 0)
    assert set(np.flatnonzero(planted.labels)) <= set(rows.tolist())
    np.testing.assert_array_equal(decode(cloud["scores"], "<f4"), planted.normalized[rows])
    assert f"drawing {keep:,} of {n:,} points" in text


def test_views_as_png_bytes(tmp_path: Path) -> None:
    from align3d_rt.eval.page.views import encode_png

    png = encode_png(np.zeros((8, 8, 3), np.uint8))
    _, text = _write(tmp_path, planted_part().part, views=[png, png])
    assert len(re.findall(r'<img alt="view \d"', text)) == 2


def test_key_cannot_break_out_of_the_page(tmp_path: Path) -> None:
    planted = planted_part()
    key = 'x</script><script>alert(1)</script>&"'
    text = write_part_page(tmp_path / "k.html", key=key, points=planted.points, scores=planted.raw,
                           region_labels=None, part={"object_score": 0.5}, views=None).read_text(encoding="utf-8")
    assert embedded_data(text)["key"] == key
    assert text.count("<script") == text.count("</script>") == 3  # the data, three.js, ours: the key opens none
    assert "<h1>x&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;</h1>" in text


@pytest.mark.parametrize("bad", ["nan_score", "short_labels", "not_png", "region_field"])
def test_bad_inputs_refused_nothing_written(tmp_path: Path, bad: str) -> None:
    planted = planted_part()
    scores, labels, views = planted.normalized.copy(), planted.labels, None
    if bad == "nan_score":
        scores[3] = np.nan
    elif bad == "short_labels":
        labels = labels[:-1]
    elif bad == "not_png":
        views = [b"GIF89a"]
    else:
        planted.part["regions"][0].pop("bbox_max")
    with pytest.raises(Align3DError,
                       match=r"^" + re.escape(str(tmp_path / "part.html")) + ": cannot write the result page"):
        _write(tmp_path, planted.part, scores=scores, labels=labels, views=views)
    assert not list(tmp_path.iterdir())


def test_index_rejects_first_then_by_score(tmp_path: Path) -> None:
    entries = [
        {"key": "ok_high", "href": "ok_high.html", "decision": "ok", "object_score": 0.5,
         "object_score_normalized": 0.49, "num_regions": 1},
        {"key": "rej_low", "href": "rej_low.html", "decision": "reject", "object_score": 0.6,
         "object_score_normalized": 0.55, "num_regions": 0},
        {"key": "ok_low", "href": "ok_low.html", "decision": "ok", "object_score": 0.1,
         "object_score_normalized": 0.2, "num_regions": 0},
        {"key": "rej_high", "href": "rej_high.html", "decision": "reject", "object_score": 0.9,
         "object_score_normalized": 0.95, "num_regions": 2},
    ]
    text = write_index_page(tmp_path / "index.html", entries).read_text(encoding="utf-8")
    assert _refs(text).refs == ["rej_high.html", "rej_low.html", "ok_high.html", "ok_low.html"]
    assert "4 part(s), 2 rejected" in text and text.count(">REJECT<") == 2
    raw = [{"key": k, "href": f"{k}.html", "object_score": s} for k, s in (("a", 0.2), ("b", 0.7), ("c", 0.4))]
    text = write_index_page(tmp_path / "index.html", raw).read_text(encoding="utf-8")
    assert _refs(text).refs == ["b.html", "c.html", "a.html"] and "no calibration" in text


# --- infer --html ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from infer_eval_support import shared_tiny_run

    return shared_tiny_run(tmp_path_factory)


def test_infer_html_writes_pages_and_index(tiny_run: Path, tmp_path: Path) -> None:
    from infer_eval_support import bump_cloud

    from align3d_rt.cli import main

    clouds = tmp_path / "clouds"
    clouds.mkdir()
    for name, seed in (("a", 1), ("b", 2)):
        np.save(clouds / f"{name}.npy", bump_cloud(30, seed=seed).points)
    out = tmp_path / "out"
    assert main(["infer", str(clouds), "--run", str(tiny_run), "--out", str(out), "--html", "--no-ply",
                 "--no-png"]) == 0
    summary = json.loads((out / "scores.json").read_text())
    assert {e["outputs"]["html"] for e in summary["samples"].values()} == {"clouds__a.html", "clouds__b.html"}
    text = (out / "clouds__a.html").read_text(encoding="utf-8")
    data = embedded_data(text)
    np.testing.assert_array_equal(decode(data["cloud"]["points"], "<f4").reshape(-1, 3),
                                  np.load(out / "clouds__a.points.npy"))
    np.testing.assert_array_equal(decode(data["cloud"]["scores"], "<f4"), np.load(out / "clouds__a.scores.npy")[:, 2])
    assert data["part"]["object_score"] == summary["samples"]["clouds__a"]["object_score"]
    assert "no calibration: raw scores" in text
    assert len(re.findall(r'<img alt="view \d"', text)) == 9  # the overlay views, kept for the page under --no-png
    by_score = sorted(summary["samples"], key=lambda k: -summary["samples"][k]["object_score"])
    assert _refs((out / "index.html").read_text(encoding="utf-8")).refs == [f"{k}.html" for k in by_score]
    assert not list(out.glob(".*"))


def test_result_page_with_a_decision(tmp_path: Path) -> None:
    """``infer --html`` with a calibration: the page takes the decision's normalised scores and labels."""
    from align3d_rt.cli.infer_page import write_result_page

    planted = planted_part()
    decision = SimpleNamespace(
        normalized=planted.normalized, regions=SimpleNamespace(labels=planted.labels),
        to_json=lambda: {k: planted.part[k] for k in ("decision", "object_score_normalized", "regions", "num_regions")})
    result = SimpleNamespace(decision=decision, fused=planted.raw, render=None, view_maps=None,
                             sample=SimpleNamespace(points=planted.points))
    entry = {"file": "p.npy", "object_score": 0.91, "outputs": {}}
    assert write_result_page(tmp_path, "p", result, entry, 0.5) == "p.html"
    data = embedded_data((tmp_path / "p.html").read_text(encoding="utf-8"))
    assert data["part"]["decision"] == "reject" and data["part"]["object_score"] == 0.91
    np.testing.assert_array_equal(decode(data["cloud"]["scores"], "<f4"), planted.normalized)
    np.testing.assert_array_equal(decode(data["cloud"]["labels"], "<i4"), planted.labels)
