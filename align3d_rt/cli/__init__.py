"""The ``align3d-rt`` command: one module per command in this package, each with ``register(subparsers)``."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from typing import Any

# Each module's register(subparsers) adds its command. Modules must not import torch at import time
# (the line-side ONNX Runtime path runs without it).
_COMMAND_MODULES = (
    "align3d_rt.cli.synth",
    "align3d_rt.cli.render",
    "align3d_rt.cli.train",
    "align3d_rt.cli.infer",
    "align3d_rt.cli.calibrate",
    "align3d_rt.cli.eval",
    "align3d_rt.cli.demo",
    "align3d_rt.cli.export",
    "align3d_rt.cli.import_checkpoint",
    "align3d_rt.cli.parity",
    "align3d_rt.cli.bench",
)


def build_parser() -> argparse.ArgumentParser:
    from align3d_rt.cli.numbers import OneLineParser  # usage errors: one line, exit 2

    parser = OneLineParser(prog="align3d-rt", description="Align3D-AD zero-shot 3D anomaly detection")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True)
    for mod_name in _COMMAND_MODULES:
        importlib.import_module(mod_name).register(sub)
    return parser


def _version() -> str:
    from align3d_rt import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on hub retries; weights come from the cache
    parser = build_parser()
    if (empty := _empty_argument(sys.argv[1:] if argv is None else argv)) is not None:
        print(f"align3d-rt: error: {empty}", file=sys.stderr)
        return 2
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # a usage error (one line, 2) or --help/--version (0): returned like any other
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    return run_parsed(args)


def run_parsed(args: argparse.Namespace) -> int:
    """Run a parsed command with SIGTERM turned into :class:`Terminated`; the exit code."""
    previous = _stop_on_sigterm()
    try:
        return _run_command(args)
    except Terminated:  # SIGTERM while an error was being reported: the command had already stopped
        print(f"align3d-rt {args.command}: terminated", file=sys.stderr)
        return 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run_command(args: argparse.Namespace) -> int:
    """Run the chosen command; every way it can end becomes one line and an exit code."""
    from align3d_rt.errors import Align3DError

    try:
        rc = args.func(args)
    except Terminated:
        print(f"align3d-rt {args.command}: terminated", file=sys.stderr)
        return 143
    except Align3DError as err:
        print(f"align3d-rt {args.command}: error: {_rank_prefix()}{err}", file=sys.stderr)
        _tell_torchrun(err)
        return 2
    except OSError as err:  # the machine said no (disk full, read-only, permissions...): one line, no traceback
        print(f"align3d-rt {args.command}: error: {_rank_prefix()}{os_error_line(err)}", file=sys.stderr)
        _tell_torchrun(err)
        return 2
    except Exception as err:  # re-raised unless under torchrun: then one line naming the failing rank
        if not _rank_prefix():
            raise
        print(f"align3d-rt {args.command}: error: {_rank_prefix()}{_failure_line(err)}", file=sys.stderr)
        _tell_torchrun(err)
        return 1
    except KeyboardInterrupt:
        print(f"align3d-rt {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, torchrun stopping the other ranks): unwinds like Ctrl-C, so a stopped train or eval
    records that it stopped instead of leaving a manifest that says "running"."""


_terminated = threading.Event()  # set by the first SIGTERM of a command; later ones are ignored


def _raise_terminated(signum: int, frame: object) -> None:
    """Raise :class:`Terminated` once: a second SIGTERM (torchrun repeats it) must not interrupt the
    unwinding or the one-line report of the first, which would end in a traceback."""
    if _terminated.is_set():
        return
    _terminated.set()
    raise Terminated


def _stop_on_sigterm() -> Any:
    """Turn SIGTERM into :class:`Terminated` while a command runs; returns the handler to restore (None off
    the main thread, where Python cannot install one)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    _terminated.clear()
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _empty_argument(argv: list[str]) -> str | None:
    """Why an empty argument is refused (None when there is none): argparse would turn ``--out ""`` or a
    path ``""`` (an unset shell variable) into ``.``, the current folder, and read or write there."""
    for i, token in enumerate(argv):
        if token.startswith("--") and token.endswith("=") and len(token) > 3:
            return f"argument {token[:-1]}: empty value (an unset shell variable?)"
        if token == "":
            before = argv[i - 1] if i > 0 else ""
            where = f"argument {before}" if before.startswith("--") else "a path argument"
            return f"{where}: empty value (an unset shell variable?)"
    return None


def os_error_line(err: OSError) -> str:
    """'PATH: problem' for an OSError (the file it names, the system's words; a hint for a full disk)."""
    import errno

    problem = err.strerror or str(err) or type(err).__name__
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        problem += " (free some space, or choose another --out, and run again)"
    target = err.filename if err.filename is not None else None
    if target is not None and err.filename2 is not None:
        return f"{target} -> {err.filename2}: {problem}"
    return f"{target}: {problem}" if target is not None else problem


def _rank_prefix() -> str:
    """'rank R of W: ' in a multi-process (torchrun) job, else ''."""
    from align3d_rt.distributed import env_rank_info, launched_by_torchrun

    if not launched_by_torchrun():
        return ""
    try:
        info = env_rank_info()
    except Exception:  # noqa: BLE001 - a broken environment is reported by the command itself
        return "rank ?: "
    return f"{info.label()}: " if info.distributed else ""


def _tell_torchrun(err: BaseException) -> None:
    """Under torchrun: the error (and its traceback) into the worker's error file, so torchrun's failure
    summary shows this rank's message as the root cause instead of 'To enable traceback see ...'."""
    if not _rank_prefix() or not os.environ.get("TORCHELASTIC_ERROR_FILE"):
        return
    try:
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(err)
    except Exception:  # noqa: BLE001 - the one-line message is already out; the summary is a bonus
        pass


def _failure_line(err: BaseException) -> str:
    """One line for an unexpected error of one rank; a failed collective says another rank is the cause."""
    first = (str(err).strip().splitlines() or [""])[0][:300]
    dist = sys.modules.get("torch.distributed")
    transport = any(word in first for word in ("gloo", "NCCL", "nccl", "Connection closed by peer", "Timed out"))
    if dist is not None and (isinstance(err, getattr(dist, "DistError", ())) or transport):
        return f"stopped: a collective failed (another rank died, or timed out): {first}"
    return f"{type(err).__name__}: {first}"


if __name__ == "__main__":
    sys.exit(main())
