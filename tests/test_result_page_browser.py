"""The result page in a real browser: headless Chromium (Debian's ``chromium``, scripts/setup.sh)
opens it from file://, with WebGL on SwiftShader; no console error, the cloud drawn, the regions
marked, the decision shown, and the mouse turns the view."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from chromium_page import chromium_binary, open_page
from result_page_support import planted_part

from align3d_rt.eval.page import write_part_page

BACKGROUND = (0x1B, 0x1E, 0x24)  # the canvas clear colour (part.js)
REJECT_RED = (0xD0, 0x20, 0x1A)  # .decision.reject (page.css)
UNCAL_GREY = (0x6B, 0x72, 0x80)  # .decision.uncalibrated
MARKER = (0xFF, 0x33, 0xFF)  # region points (part.js)

EXPRESSIONS = {
    "decision": 'document.getElementById("decision").textContent',
    "banner": 'document.getElementById("decision").getBoundingClientRect()',
    "canvas": 'document.getElementById("cloud-canvas").getBoundingClientRect()',
    "drawn": "document.body.dataset.cloudDrawn",
    "labels": 'Array.from(document.querySelectorAll(".region-label")).map(e => [e.textContent, e.style.display])',
}
READY = "document.body.dataset.cloudDrawn"


@pytest.fixture(scope="module", autouse=True)
def _chromium() -> None:
    if chromium_binary() is None:
        pytest.fail("chromium is not installed: run scripts/setup.sh (it installs Debian's chromium)")


def _box(image: np.ndarray, rect: dict) -> np.ndarray:
    x0, y0 = int(np.ceil(rect["left"])), int(np.ceil(rect["top"]))
    x1, y1 = int(rect["right"]), int(rect["bottom"])
    return image[y0:y1, x0:x1]


def _share(pixels: np.ndarray, colour: tuple[int, int, int], tol: int = 6) -> float:
    return float(np.all(np.abs(pixels.astype(int) - colour) <= tol, axis=-1).mean())


def test_reject_page_draws_cloud_regions_and_decision(tmp_path: Path) -> None:
    planted = planted_part(decision="reject")
    page = write_part_page(tmp_path / "part.html", key="part", points=planted.points, scores=planted.normalized,
                           region_labels=planted.labels, part=planted.part,
                           views=np.full((9, 32, 32, 3), 200, np.uint8))
    cx, cy = 500, 460  # inside the canvas
    drag = [("Input.dispatchMouseEvent", {"type": t, "x": x, "y": cy, "button": "left", "buttons": b, "clickCount": 1})
            for t, x, b in (("mousePressed", cx, 1), ("mouseMoved", cx + 60, 1), ("mouseMoved", cx + 140, 1),
                            ("mouseReleased", cx + 140, 0))]
    run = open_page(page, EXPRESSIONS, ready=READY, then=drag)
    assert run.errors == [], run.errors
    assert run.values["decision"] == "REJECT"
    assert run.values["drawn"] == str(len(planted.points))
    assert run.values["labels"] == [["1", "block"]]  # region 1 labelled, in front of the camera
    assert _share(_box(run.screenshot, run.values["banner"]), REJECT_RED) > 0.5
    canvas = _box(run.screenshot, run.values["canvas"])
    assert canvas.shape[0] > 300 and canvas.shape[1] > 300
    drawn = 1.0 - _share(canvas, BACKGROUND, tol=3)
    assert drawn > 0.05, f"only {drawn:.3f} of the canvas drawn"
    assert _share(canvas, MARKER, tol=20) > 0.0005  # region points marked
    # a left drag turns the cloud: the canvas changes, the page around it does not
    after = _box(run.after, run.values["canvas"])
    assert np.abs(after.astype(int) - canvas.astype(int)).max(axis=-1).astype(bool).mean() > 0.01
    assert np.array_equal(_box(run.after, run.values["banner"]), _box(run.screenshot, run.values["banner"]))


def test_uncalibrated_page_in_browser(tmp_path: Path) -> None:
    planted = planted_part()
    page = write_part_page(tmp_path / "raw.html", key="raw", points=planted.points, scores=planted.raw,
                           region_labels=None, part={"object_score": 0.7}, views=None)
    run = open_page(page, EXPRESSIONS, ready=READY)
    assert run.errors == [], run.errors
    assert run.values["decision"] == "no calibration: raw scores" and run.values["labels"] == []
    assert _share(_box(run.screenshot, run.values["banner"]), UNCAL_GREY) > 0.5
    assert 1.0 - _share(_box(run.screenshot, run.values["canvas"]), BACKGROUND, tol=3) > 0.05


def test_the_harness_sees_script_errors(tmp_path: Path) -> None:
    """The check above could fail: a page whose data is broken reports an uncaught exception."""
    planted = planted_part()
    page = write_part_page(tmp_path / "broken.html", key="broken", points=planted.points, scores=planted.raw,
                           region_labels=None, part={"object_score": 0.7}, views=None)
    text = page.read_text(encoding="utf-8").replace('id="part-data">{', 'id="part-data">{,', 1)
    page.write_text(text, encoding="utf-8")
    run = open_page(page, {"drawn": READY}, ready="true")  # the exception is thrown during the load
    assert run.values["drawn"] is None
    assert any("exception" in e and "JSON" in e for e in run.errors), run.errors
