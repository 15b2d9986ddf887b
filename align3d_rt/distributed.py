"""torch.distributed glue for ``torchrun``: rank info from the environment, a process group with a
timeout, shards, barriers, rank-0-only writes and gathers.

A plain (non-torchrun) process is rank 0 of a world of 1 and every helper is a no-op there, so the
single-process code path is unchanged. Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK set; multi-node
rendezvous flags work too, since only these variables are read) ``session`` creates the process
group: gloo on CPU, nccl on GPUs (device cuda:LOCAL_RANK). Every collective is bounded by the
group's timeout (ALIGN3D_DIST_TIMEOUT seconds, default 600): a rank that dies or hangs ends the
job with an error instead of a hang (torchrun itself stops the other ranks when one exits non-zero).
torch is imported lazily: the line-side paths never need it.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from align3d_rt.errors import Align3DError

__all__ = ["RankInfo", "launched_by_torchrun", "env_rank_info", "current", "session", "shard", "barrier",
           "gather_objects", "sum_floats", "is_main", "timeout_seconds", "fail_point", "TIMEOUT_ENV", "FAIL_ENV"]

TIMEOUT_ENV = "ALIGN3D_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
# test hook: "RANK:POINT" makes that rank raise at that point; "RANK:POINT:hang" stalls it
FAIL_ENV = "ALIGN3D_TEST_FAIL"
T = TypeVar("T")


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job (rank 0 of 1 in a plain run)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    device: str | None = None   # set by ``session``: 'cpu' or 'cuda:LOCAL_RANK'

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def label(self) -> str:
        return f"rank {self.rank} of {self.world_size}"


_CURRENT = RankInfo()


def launched_by_torchrun() -> bool:
    """True when the environment torchrun (or any env:// launcher) sets is present."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def env_rank_info() -> RankInfo:
    """Rank info read from RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE (plain run: rank 0 of 1)."""
    if not launched_by_torchrun():
        return RankInfo()
    try:
        rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    except ValueError:
        raise Align3DError("RANK/WORLD_SIZE/LOCAL_RANK: not integers; start multi-process runs with torchrun") from None
    if not (0 <= rank < world and 0 <= local < local_world):
        raise Align3DError(f"RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local}: inconsistent torchrun environment")
    return RankInfo(rank, world, local, local_world)


def current() -> RankInfo:
    """This process's rank info: set by an open ``session``, else rank 0 of 1."""
    return _CURRENT


def is_main() -> bool:
    return _CURRENT.is_main


def timeout_seconds() -> float:
    """Bound on every collective (and on the rendezvous of init_process_group)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise Align3DError(f"{TIMEOUT_ENV}={raw}: must be a number of seconds above 0")
    return value


def _choose_device(requested: str, info: RankInfo) -> str:
    """'cpu' or 'cuda:LOCAL_RANK' (the same kind on every rank of a node: each rank needs its own GPU)."""
    import torch

    req = str(requested).lower()
    if req == "cpu":
        return "cpu"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if req.startswith("cuda"):
        if count < info.local_world_size:
            raise Align3DError(f"--device {requested}: {info.local_world_size} ranks on this node need one GPU each, "
                               f"{count} visible; use fewer --nproc-per-node or --device cpu")
        return f"cuda:{info.local_rank}"
    if req != "auto":
        raise Align3DError(f"--device {requested}: choose auto, cpu or cuda")
    return f"cuda:{info.local_rank}" if count >= info.local_world_size and count > 0 else "cpu"


@contextlib.contextmanager
def session(requested_device: str = "auto") -> Iterator[RankInfo]:
    """Open the process group when launched by torchrun (yield its RankInfo); a plain run yields rank 0 of 1.

    On a clean exit the group is destroyed; on an error it is left to process exit (destroying a group
    whose peers are gone can block).
    """
    global _CURRENT
    if not launched_by_torchrun():
        yield _CURRENT
        return
    import datetime

    import torch
    import torch.distributed as dist

    info = env_rank_info()
    device = _choose_device(requested_device, info)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
        with contextlib.suppress(Exception):  # numba kernels (render, back-projection) on the same GPU
            from numba import cuda as numba_cuda

            numba_cuda.select_device(info.local_rank)
    backend = "nccl" if device.startswith("cuda") else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=info.rank, world_size=info.world_size,
                            timeout=datetime.timedelta(seconds=timeout_seconds()))
    previous = _CURRENT
    _CURRENT = RankInfo(info.rank, info.world_size, info.local_rank, info.local_world_size, device)
    try:
        yield _CURRENT
    except BaseException:
        _CURRENT = previous
        raise
    dist.destroy_process_group()
    _CURRENT = previous


def _group_open() -> bool:
    if not _CURRENT.distributed:
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def shard(items: Sequence[T], info: RankInfo | None = None) -> list[T]:
    """This rank's items: ``items[rank::world]`` (DistributedSampler's interleaved split, no padding)."""
    info = info or _CURRENT
    return list(items[info.rank::info.world_size])


def barrier() -> None:
    """Wait for every rank (bounded by the group's timeout); no-op in a plain run."""
    if _group_open():
        import torch.distributed as dist

        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (all_gather_object); ``[obj]`` in a plain run."""
    if not _group_open():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * _CURRENT.world_size
    dist.all_gather_object(out, obj)
    return out


def sum_floats(values: dict[str, float]) -> dict[str, float]:
    """Sum of each named float over all ranks (keys must match on every rank); unchanged in a plain run."""
    if not _group_open() or not values:
        return dict(values)
    import torch
    import torch.distributed as dist

    keys = sorted(values)
    device = _CURRENT.device if (_CURRENT.device or "").startswith("cuda") else "cpu"
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) for k, v in zip(keys, t.cpu().tolist(), strict=True)}


def fail_point(point: str) -> None:
    """Test hook (``ALIGN3D_TEST_FAIL=RANK:POINT[:hang]``): make one rank die (or stall) at a named point."""
    spec = os.environ.get(FAIL_ENV, "")
    if not spec:
        return
    parts = spec.split(":")
    if len(parts) < 2 or parts[0] != str(_CURRENT.rank) or parts[1] != point:
        return
    if len(parts) > 2 and parts[2] == "hang":
        import time

        while True:  # a stuck rank: the others must time out, not wait forever
            time.sleep(3600)
    raise RuntimeError(f"injected failure at '{point}' ({FAIL_ENV}={spec})")
