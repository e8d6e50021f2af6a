"""Where a run's time goes: wall-clock seconds per stage and rule, and the part of it spent compiling.

`Clock.stage(name, rule)` is a context manager that adds the block's wall time to (name, rule). While a
stage is open, XLA compilation reported by `jax.monitoring` (tracing, lowering and backend compilation) is
added to that stage's compile seconds, so a stage that compiles on every call shows up in the table. The
pipeline prints `Clock.table()` at the end of a run and stores `Clock.record()` in run_info.json.

Times include waiting for the device: every timed stage ends with host copies (metrics, features, RDMs), so
asynchronous dispatch does not shift time from one stage into the next.
"""

import contextlib
import time

import jax

_COMPILE_EVENTS = (
  "/jax/core/compile/jaxpr_trace_duration",
  "/jax/core/compile/jaxpr_to_mlir_module_duration",
  "/jax/core/compile/backend_compile_duration",
)
_active: list = []  # the open stages' accumulators, innermost last (compile time goes to the innermost)


def _on_event(event: str, duration: float, **_) -> None:
  if event in _COMPILE_EVENTS and _active:
    _active[-1][1] += duration


jax.monitoring.register_event_duration_secs_listener(_on_event)


class Clock:
  """Accumulates [wall s, compile s] per (stage, rule) in first-use order; `total` runs from construction."""

  def __init__(self):
    self._start = time.perf_counter()
    self._seconds: dict[tuple[str, str], list[float]] = {}

  @contextlib.contextmanager
  def stage(self, name: str, rule: str = ""):
    """Times the block as stage `name` of `rule` ("" for stages shared by all rules); repeated blocks add up.
    Stages are not nested (a nested block's time would be counted twice)."""
    acc = self._seconds.setdefault((name, rule), [0.0, 0.0])
    entry = [0.0, 0.0]
    _active.append(entry)
    t0 = time.perf_counter()
    try:
      yield
    finally:
      _active.pop()
      acc[0] += time.perf_counter() - t0
      acc[1] += entry[1]

  @property
  def total(self) -> float:
    """Seconds since the clock was made."""
    return time.perf_counter() - self._start

  def rows(self) -> list[dict]:
    """[{stage, rule, seconds, compile_seconds, share}] plus an "other" row for untimed work; share of total."""
    total = max(self.total, 1e-9)
    rows = [
      {"stage": s, "rule": r, "seconds": round(w, 3), "compile_seconds": round(c, 3), "share": round(w / total, 4)}
      for (s, r), (w, c) in self._seconds.items()
    ]
    other = total - sum(w for w, _ in self._seconds.values())
    rows.append(
      {
        "stage": "other",
        "rule": "",
        "seconds": round(other, 3),
        "compile_seconds": 0.0,
        "share": round(other / total, 4),
      }
    )
    return rows

  def record(self) -> dict:
    """{"total_seconds", "stages": rows()} for run_info.json."""
    return {"total_seconds": round(self.total, 3), "stages": self.rows()}

  def table(self) -> str:
    """The rows as a fixed-width text table, stages summed over rules first, then per rule."""
    rows = self.rows()
    by_stage: dict[str, list[float]] = {}
    for r in rows:
      acc = by_stage.setdefault(r["stage"], [0.0, 0.0])
      acc[0] += r["seconds"]
      acc[1] += r["compile_seconds"]
    total = max(self.total, 1e-9)
    lines = [f"Wall time {total:.1f} s ({total / 60:.1f} min). Per stage (compile = XLA tracing + compilation):"]
    lines.append(f"  {'stage':<16}{'seconds':>10}{'share':>8}{'compile s':>11}")
    lines += [f"  {s:<16}{w:>10.1f}{w / total:>8.1%}{c:>11.1f}" for s, (w, c) in by_stage.items()]
    rules = list(dict.fromkeys(r["rule"] for r in rows if r["rule"]))
    if rules:
      per_rule = [f"{u} {sum(r['seconds'] for r in rows if r['rule'] == u):.1f} s" for u in rules]
      lines.append("  per rule: " + ", ".join(per_rule))
    return "\n".join(lines)
