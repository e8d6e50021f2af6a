"""brainalign.report.progress: chunk sizes, the bar's count, and one stated estimate per section."""

import logging

from brainalign.report import progress


def test_chunk_size_splits_rows_into_about_twenty_calls_with_little_padding():
  for rows in (1, 5, 20, 21, 101, 1001):
    c = progress.chunk_size(rows)
    calls = -(-rows // c)
    assert calls <= progress.CALLS_PER_BOOTSTRAP and calls * c - rows < calls  # < one row of padding per call


def test_estimate_is_stated_once_from_the_second_call_and_sections_use_the_mean(caplog):
  caplog.set_level(logging.INFO)
  bar = progress.SectionProgress("S1", rows=10, parts=2, sections_left=3)
  rsa, partial = bar.callback(0), bar.callback(1)
  for done in (2, 4, 6, 8, 10):
    rsa(done, 10)
  for done in (5, 10):
    partial(done, 10)
  assert bar.done == 20
  said = [r.getMessage() for r in caplog.records if "per resample" in r.getMessage()]
  assert len(said) == 1 and "2 bootstrap(s) of 10 resamples" in said[0] and "3 after it" in said[0]
  seconds = bar.close()
  assert seconds >= 0
  caplog.clear()
  nxt = progress.SectionProgress("S2", rows=10, parts=1, sections_left=1, done_seconds=(60.0, 120.0))
  assert any("about 90 s" in r.getMessage() and "3.0 min" in r.getMessage() for r in caplog.records)
  nxt.callback(0)(5, 10)
  nxt.callback(0)(10, 10)
  assert not any("per resample" in r.getMessage() for r in caplog.records)  # already estimated
  nxt.close()
