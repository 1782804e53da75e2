"""Which cases a shard or a torchrun rank scores, and the fingerprint of a run's input listing.

Assignment (:func:`select_cases`, defined in :mod:`trace_bench.sharding`): all paired case ids are
sorted by ``sha256(case_id)`` (a stable hash: same on every machine, unlike Python's ``hash``) and
dealt round robin, so shards differ by at most one case and a case always lands in the same shard
for the same case list. Every volume of a
case (reference, generated, masks) is in the same shard. ``--shard I/N`` picks shard I; a torchrun
rank r of W splits its shard once more the same way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..sharding import assign_cases, case_hash, select_cases  # noqa: F401 - re-exported


def digest(items: Iterable[str]) -> str:
    h = hashlib.sha256()
    for it in items:
        h.update(it.encode("utf-8") + b"\n")
    return h.hexdigest()


def shard_info(all_ids: Sequence[str], own: Sequence[str], shard: str | None, part: tuple[int, int] | None) -> dict[str, Any]:
    """What a sharded manifest records: the spec, the rank part, its cases, and the full case list's digest."""
    return {"spec": shard, "part": list(part) if part is not None else None, "cases": sorted(own),
            "n_cases": len(set(all_ids)), "n_shard_cases": len(select_cases(all_ids, shard)),
            "all_cases_sha256": digest(sorted(set(all_ids)))}


def case_listing(pairing) -> str:
    """sha256 over (method, case id, file name, size) of every paired input, mask and prompt: cheap
    (one ``stat`` per file) and the same in every shard when they read the same inputs. Folder inputs
    (DICOM, PNG stacks) count with their name only."""
    rows: list[str] = []

    def add(method: str, cid: str, path: Any) -> None:
        if path is None:
            return
        p = Path(path)
        size = p.stat().st_size if p.is_file() else -1
        rows.append(f"{method}\x1f{cid}\x1f{p.name}\x1f{size}")

    for c in pairing.cases:
        if c.reference is not None:
            add("GT", c.case_id, c.reference.path)
        add("GT:mask", c.case_id, c.reference_mask)
        for m in sorted(c.generated):
            add(m, c.case_id, c.generated[m].path)
        for m in sorted(c.method_masks):
            add(f"{m}:mask", c.case_id, c.method_masks[m])
        if c.prompt:
            rows.append(f"prompt\x1f{c.case_id}\x1f{hashlib.sha256(c.prompt.encode()).hexdigest()}")
    return digest(sorted(rows))


