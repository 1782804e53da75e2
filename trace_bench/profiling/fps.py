"""Slices per second of a black-box generator from the completion times of its output volumes.

The paper defines FPS at volume level: slices produced / generation wall time. A generator run as a
black box also spends time before its first volume (interpreter start, imports, loading weights, CUDA
context, kernel autotuning, the first batch's allocations); that warm-up is what the rule removes.

Rules (``--warmup``):

* ``first-output`` (default, = ``first:1``): the warm-up ends when the first output volume is
  complete. FPS = slices of the volumes completed after it / (completion of the last volume -
  completion of the first). The first volume's slices are left out together with its time, so the
  rate is the steady-state rate between outputs. It equals "time from the first output to the last,
  plus the first volume's time extrapolated from the per-slice time of the others":
  total / (T + n1 * T / (total - n1)) = (total - n1) / T. Needs at least two volumes.
* ``first:K``: the same with the first K volumes as warm-up: for a generator that writes a batch
  of K volumes together, so that the first whole batch is excluded (a batch's files are written
  milliseconds apart; counting them separately would inflate the rate).
* ``none``: every slice / (completion of the last volume - process start): the pessimistic figure
  that includes start-up and model loading.

When fewer volumes than the rule needs appear, ``none`` is applied and the JSON says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

WARMUP_HELP = ("first-output (default: exclude the time up to the first complete output volume and its slices), "
               "first:K (the first K volumes, e.g. one batch), or none (include start-up)")


@dataclass(frozen=True)
class WarmupRule:
    """How many leading output volumes count as warm-up (0 = none)."""

    skip: int

    @property
    def name(self) -> str:
        return "none" if self.skip == 0 else ("first-output" if self.skip == 1 else f"first:{self.skip}")

    def describe(self) -> str:
        """One sentence for the JSON."""
        if self.skip == 0:
            return "none: all slices / (completion of the last output volume - process start)"
        what = "the first output volume" if self.skip == 1 else f"the first {self.skip} output volumes"
        return (f"{self.name}: time up to the completion of {what} and their slices excluded; fps = slices of "
                f"the later volumes / (completion of the last volume - completion of {what})")


def parse_warmup(text: str) -> WarmupRule:
    """``none`` | ``first-output`` | ``first:K`` (K >= 1) -> :class:`WarmupRule`; one-line error otherwise."""
    t = str(text).strip().lower()
    if t == "none":
        return WarmupRule(0)
    if t in ("first-output", "first"):
        return WarmupRule(1)
    if t.startswith("first:"):
        try:
            k = int(t.split(":", 1)[1])
        except ValueError:
            k = -1
        if k >= 0:
            return WarmupRule(k)
    raise ConfigError(f"--warmup {text!r}: expected {WARMUP_HELP}")


@dataclass(frozen=True)
class FpsResult:
    """The figure and how it was obtained."""

    fps: float | None
    slices_total: int
    slices_counted: int
    seconds: float | None  # the denominator (generation time excluding warm-up)
    warmup_seconds: float | None  # from process start to the end of the warm-up
    applied: WarmupRule
    note: str


def fps_from_outputs(completions: list[tuple[float, int]], rule: WarmupRule) -> FpsResult:
    """``completions``: (seconds since the process started, slices) per output volume, any order."""
    outs = sorted(completions)
    total = sum(n for _, n in outs)
    if not outs:
        return FpsResult(None, 0, 0, None, None, rule, "no output volume appeared: fps unavailable")
    applied, note = rule, ""
    if rule.skip and len(outs) <= rule.skip:
        applied = WarmupRule(0)
        note = (f"only {len(outs)} output volume(s): warm-up rule {rule.name} needs at least {rule.skip + 1}; "
                "applied 'none' (start-up included)")
    if applied.skip == 0:
        secs = outs[-1][0]
        warm = 0.0
        counted = total
    else:
        warm = outs[applied.skip - 1][0]
        secs = outs[-1][0] - warm
        counted = sum(n for _, n in outs[applied.skip:])
    if secs <= 0:
        return FpsResult(None, total, counted, secs, warm, applied,
                         (note + "; " if note else "") + "outputs completed at the same instant: fps undefined "
                         "(use --warmup first:K with K the batch size)")
    return FpsResult(counted / secs, total, counted, secs, warm, applied, note)
