"""Which cases a shard or a torchrun rank owns: the stable split shared by ``trace-bench run`` (the run
core) and ``trace_model`` (data preparation, training), so neither borrows the other's code.

Assignment (:func:`select_cases`): all case ids are sorted by ``sha256(case_id)`` (a stable hash: the
same on every machine, unlike Python's ``hash``) and dealt round robin, so shards differ by at most one
case and a case always lands in the same shard for the same case list. ``--shard I/N`` picks shard I
(numbered from 1, like SLURM ``--array=1-N``); a torchrun rank r of W splits its shard once more the
same way. The rank comes from the environment torchrun sets (:func:`torchrun_env`).

Imports only the standard library and :mod:`trace_bench.errors`.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable, Sequence

from .errors import ConfigError


def parse_shard(spec: str) -> tuple[int, int]:
    """``"I/N"`` -> (I, N) with 1 <= I <= N (shards are numbered from 1, like SLURM ``--array=1-N``)."""
    text = str(spec).strip()
    head, sep, tail = text.partition("/")
    try:
        i, n = int(head), int(tail)
    except ValueError:
        i = n = 0
    if not sep or n < 1 or not 1 <= i <= n:
        raise ConfigError(f"shard {spec!r}: expected I/N with 1 <= I <= N, e.g. 1/4 ... 4/4 "
                          "(shards are numbered from 1; with SLURM use --array=1-N and ${SLURM_ARRAY_TASK_ID}/N)")
    return i, n


def case_hash(case_id: str) -> str:
    """sha256 of the UTF-8 case id (hex): the stable key that orders cases before dealing them to shards."""
    return hashlib.sha256(case_id.encode("utf-8")).hexdigest()


def assign_cases(case_ids: Iterable[str], count: int) -> dict[str, int]:
    """case id -> shard number (1..count): sorted by :func:`case_hash`, dealt round robin."""
    ids = sorted(set(case_ids), key=lambda c: (case_hash(c), c))
    return {c: i % count + 1 for i, c in enumerate(ids)}


def select_cases(case_ids: Sequence[str], shard: str | None, part: tuple[int, int] | None = None) -> list[str]:
    """The case ids of shard ``"I/N"`` (all when None), split once more into ``part = (r, W)`` (1-based)."""
    ids = sorted(set(case_ids))
    if shard is not None:
        i, n = parse_shard(shard)
        a = assign_cases(ids, n)
        ids = [c for c in ids if a[c] == i]
    if part is not None:
        r, w = part
        if not 1 <= r <= w:
            raise ConfigError(f"part {r}/{w}: expected 1 <= r <= W")
        a = assign_cases(ids, w)
        ids = [c for c in ids if a[c] == r]
    return ids


def torchrun_env() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when started by torchrun with more than one process, else None."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return None
    if world <= 1 or "RANK" not in os.environ:
        return None
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
