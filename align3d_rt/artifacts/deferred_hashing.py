"""Hash the files an encoder reads first, the rest while it loads (docs/runtime-spec.md 2.4).

On the OpenVINO route only the IR (xml + bin) is compiled; the fp32 ONNX graph beside it is the largest
file of the bundle and the longest hash. ``verify_first`` hashes the IR now and the other files on a
background thread; ``PendingFiles.finish`` waits for them and raises what the sequential check would: the
first problem in sorted order over all files. A bundle is refused or accepted exactly as by
``bundle.verify_files``; only the moment the unread files' problem is raised moves (before anything is
scored or written, and before any later problem). The C++ inspector does the same (``PendingFiles`` in
cpp/src/bundle.hpp).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from align3d_rt.artifacts.bundle import _digests, _leaves_root, check_digests, listed_files

Digests = dict[str, "str | OSError"]


class PendingFiles:
    """Bundle files still hashing on a background thread; ``finish()`` before trusting the bundle."""

    def __init__(self, root: Path, files: dict[str, str], now: Digests, rest: Future[Digests]) -> None:
        self._root = root
        self._files = files
        self._now = now
        self._rest = rest
        self._error: BaseException | None = None
        self._finished = False

    def finish(self) -> None:
        """Wait for the other files; raise the first problem over all files in sorted order (again on
        every later call)."""
        if not self._finished:
            try:
                check_digests(self._root, self._files, {**self._now, **self._rest.result()})
            except BaseException as err:  # noqa: BLE001 - kept and raised again, never swallowed
                self._error = err
            self._finished = True
        if self._error is not None:
            raise self._error


def verify_first(root: Path, manifest: dict[str, Any], first: Collection[str]) -> PendingFiles:
    """Hash ``first`` (the files the encoder reads) now and the other listed files in the background.

    A problem among ``first`` waits for the others and is raised as the sequential check's error, so the
    caller never loads a file that failed its check. Otherwise the caller loads ``first`` and calls
    ``finish()`` on the returned PendingFiles."""
    files = listed_files(root, manifest)
    now_rels = sorted(rel for rel in files if rel in first)
    rest = _in_background(_digests, root, sorted(rel for rel in files if rel not in first))
    now = _digests(root, now_rels)
    pending = PendingFiles(root, files, now, rest)
    if any(_leaves_root(rel) or rel not in now or now[rel] != files[rel] for rel in now_rels):
        pending.finish()  # raises: a problem among the files read first, reported in sorted order
    return pending


def _in_background(work: Callable[..., Digests], *args: Any) -> Future[Digests]:
    """Run ``work(*args)`` on a daemon thread (a process exiting on an error never waits for it)."""
    future: Future[Digests] = Future()

    def run() -> None:
        try:
            future.set_result(work(*args))
        except BaseException as err:  # noqa: BLE001 - handed to whoever calls result()
            future.set_exception(err)

    threading.Thread(target=run, name="align3d-bundle-hash", daemon=True).start()
    return future
