"""Progress of the report's bootstraps: a bar per section and a stated estimate before the long part starts.

Each section's bootstraps (RSA and noise ceiling, then partial RSA) run a few resamples per compiled call
(`brainalign.stats.bootstrap_rsa(chunk=...)`). The first call of a section includes its compilation, so
the estimate is made from the second: seconds per resample, the time left for this section, and (assuming
the sections left cost about as much) for the whole report. The estimate goes to the log, the bar to a
terminal (tqdm, shown only on a TTY).
"""

import math
import time

from absl import logging
from tqdm import tqdm

CALLS_PER_BOOTSTRAP = 20  # resamples are split into about this many compiled calls per bootstrap


def chunk_size(rows: int) -> int:
  """Resamples per compiled call for `rows` rows: about CALLS_PER_BOOTSTRAP calls, little padding."""
  return math.ceil(rows / min(CALLS_PER_BOOTSTRAP, max(rows, 1)))


class SectionProgress:
  """Progress of one section: `parts` bootstraps of `rows` resamples each (`callback(part)` for each).

  done_seconds: wall seconds of the sections already done (their mean times the sections left is the estimate
  stated at the start); before any section is done the estimate comes from this section's second call."""

  def __init__(self, label: str, rows: int, parts: int, sections_left: int, done_seconds: tuple = ()):
    self.label, self.rows, self.parts, self.sections_left = label, rows, parts, sections_left
    self.bar = tqdm(total=rows * parts, desc=label, unit="resample", disable=None, leave=True)
    self.start = time.perf_counter()
    self.estimated = bool(done_seconds)
    self.done = 0  # resamples evaluated so far, over all bootstraps (the bar counts only on a terminal)
    self._last = {}  # part -> (rows done, time) at its previous call
    if done_seconds:
      per = sum(done_seconds) / len(done_seconds)
      logging.info(
        "%s: about %.0f s (the mean of the sections so far), about %.1f min for it and the %d section(s) after it",
        label,
        per,
        per * (sections_left + 1) / 60,
        sections_left,
      )

  def callback(self, part: int):
    """progress(done, total) for bootstrap `part` (0 = RSA, 1 = partial RSA)."""

    def progress(done: int, total: int) -> None:
      now = time.perf_counter()
      prev_done, prev_t = self._last.get(part, (0, self.start if part == 0 else now))
      self.bar.update(done - prev_done)
      self.done += done - prev_done
      if part == 0 and prev_done > 0 and not self.estimated and done < total:
        self._estimate((now - prev_t) / max(done - prev_done, 1), total - done)
      self._last[part] = (done, now)

    return progress

  def _estimate(self, per_row: float, rows_left: int) -> None:
    """The first section's estimate: its RSA bootstrap's rate; each further bootstrap (partial RSA) is
    assumed to cost about as much."""
    self.estimated = True
    section = time.perf_counter() - self.start + per_row * (rows_left + self.rows * (self.parts - 1))
    logging.info(
      "%s: about %.2f s per resample, so about %.0f s for this section (%d bootstrap(s) of %d resamples)%s",
      self.label,
      per_row,
      section,
      self.parts,
      self.rows,
      f" and about {section * self.sections_left / 60:.1f} min for the {self.sections_left} after it"
      if self.sections_left
      else "",
    )

  def close(self) -> float:
    """Ends the bar; returns the section's wall seconds."""
    self.bar.close()
    seconds = time.perf_counter() - self.start
    logging.info("%s: done in %.0f s", self.label, seconds)
    return seconds
