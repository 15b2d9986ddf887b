"""Open a page in headless Chromium over the DevTools protocol (--remote-debugging-pipe) and bring
back what a test checks: console errors/warnings, uncaught exceptions, values evaluated in the
page and a screenshot. No network and no extra Python package: the pipe carries NUL-separated JSON."""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageRun:
    errors: list[str] = field(default_factory=list)  # console errors, uncaught exceptions, log errors
    messages: list[str] = field(default_factory=list)  # every console / log entry (level: text)
    values: dict[str, Any] = field(default_factory=dict)
    screenshot: np.ndarray | None = None  # (H,W,3) uint8
    after: np.ndarray | None = None  # screenshot after the ``then`` input events, when given


class _Pipe:
    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int, read_fd: int) -> None:
        self.proc, self.write_fd, self.read_fd = proc, write_fd, read_fd
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([self.read_fd], [], [], left)
            if ready:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 20.0) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.write_fd, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        for ev in self.events:
            if ev.get("method") == method:
                return ev
        while True:
            ev = self._read_message(deadline)
            self.events.append(ev)
            if ev.get("method") == method:
                return ev


def _errors_and_messages(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    errors, messages = [], []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            errors.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            messages.append(f"{p.get('type')}: {text}")
            if p.get("type") in ("error", "assert"):
                errors.append(f"console.{p.get('type')}: {text}")
        elif method == "Log.entryAdded":
            entry = p.get("entry", {})
            messages.append(f"{entry.get('level')}: {entry.get('text')}")
            if entry.get("level") == "error":
                errors.append(f"log error ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")
    return errors, messages


def _screenshot(pipe: _Pipe, session: str) -> np.ndarray:
    import io

    from PIL import Image

    data = pipe.call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def open_page(path: Path, expressions: dict[str, str], width: int = 1280, height: int = 900,
              ready: str = "true", timeout: float = 30.0,
              then: list[tuple[str, dict[str, Any]]] | None = None) -> PageRun:
    """Load file://PATH, wait until the JS expression ``ready`` is truthy, evaluate ``expressions``
    (name -> JS expression, JSON-serialisable values) and take a screenshot of the viewport; with
    ``then`` (DevTools input calls, e.g. Input.dispatchMouseEvent) a second screenshot after them."""
    binary = chromium_binary()
    if binary is None:
        raise RuntimeError("chromium is not installed (scripts/setup.sh installs Debian's chromium)")
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="align3d-chromium-")
    args = [binary, "--headless", "--no-sandbox", "--remote-debugging-pipe", f"--user-data-dir={profile}",
            "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--mute-audio",
            f"--window-size={width},{height}", "about:blank"]

    def child_fds() -> None:  # DevTools pipe: chromium reads fd 3, writes fd 4 (dup2 leaves them inheritable)
        high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 100)
        high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 100)
        os.dup2(high_r, 3)
        os.dup2(high_w, 4)

    # close_fds=False: a close pass would run after preexec_fn and close fds 3 and 4 again; the
    # parent's other descriptors are close-on-exec (PEP 446).
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, preexec_fn=child_fds, close_fds=False)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    pipe = _Pipe(proc, to_chrome_w, from_chrome_r)
    run = PageRun()
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        pipe.call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        pipe.wait_event("Page.loadEventFired", timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            done = pipe.call("Runtime.evaluate", {"expression": f"Boolean({ready})", "returnByValue": True},
                             session=session)["result"].get("value")
            if done or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        # two animation frames so the last WebGL draw is composited before the screenshot
        pipe.call("Runtime.evaluate", {"expression": "new Promise(r => requestAnimationFrame(() => "
                                                     "requestAnimationFrame(r)))",
                                       "awaitPromise": True}, session=session)
        for name, expr in expressions.items():
            res = pipe.call("Runtime.evaluate", {"expression": f"JSON.stringify({expr})", "returnByValue": True},
                            session=session)["result"]
            run.values[name] = json.loads(res["value"]) if res.get("type") == "string" else None
        run.screenshot = _screenshot(pipe, session)
        if then:
            for method, params in then:
                pipe.call(method, params, session=session)
            pipe.call("Runtime.evaluate",
                      {"expression": "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))",
                       "awaitPromise": True}, session=session)
            run.after = _screenshot(pipe, session)
        run.errors, run.messages = _errors_and_messages(pipe.events)
    finally:
        try:
            pipe.call("Browser.close", timeout=5.0)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(to_chrome_w)
        os.close(from_chrome_r)
        shutil.rmtree(profile, ignore_errors=True)
    return run
