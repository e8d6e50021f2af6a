"""StimulusMetadata rows of a THINGS-fMRI-like design: which image each trial shows, in which session and run.

Used by the writer (``things_writer``, re-exported there) for test fixtures and the simulated brain;
the header is ``things_layout.STIMULUS_COLUMNS`` (``docs/data-formats.md`` §5). ``make_design`` lays out
sessions × runs, every train concept once per session with one exemplar number, test images spread
over the runs; ``default_stimulus_name`` gives the THINGS image file names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from brainalign.data.things_layout import check_release

__all__ = ["default_stimulus_name", "make_design"]


def default_stimulus_name(concept: str, exemplar: int) -> str:
  """THINGS image file name ``'<concept>_<NN><letter>.jpg'`` of one exemplar of a concept.

  The letter mimics the image-source suffixes of the real files: ``'b'`` for exemplar 1, ``'n'`` for
  even exemplar numbers and ``'s'`` for the other odd ones, so all three letters occur. Train images
  use exemplar numbers 1–12, test images 13 and above (e.g. ``candelabra_14n.jpg``).
  """
  exemplar = int(exemplar)
  if not 1 <= exemplar <= 99:
    raise ValueError(f"exemplar number must be in 1..99 (two digits), got {exemplar}")
  if exemplar == 1:
    letter = "b"
  elif exemplar % 2 == 0:
    letter = "n"
  else:
    letter = "s"
  return f"{concept}_{exemplar:02d}{letter}.jpg"


def _checked_arguments(concepts, test_concepts, n_sessions, n_runs, exemplar_for_session, order_key: str):
  """``(concepts, test_concepts, n_sessions, n_runs, exemplars)`` as str lists and ints; ValueError for an order
  key, concept list, session/run count or session -> exemplar map that cannot work."""
  if order_key not in ("exemplar", "session"):
    raise ValueError(f"order_key must be 'exemplar' or 'session', got {order_key!r}")
  concepts = [str(c) for c in concepts]
  test_concepts = [str(c) for c in test_concepts]
  n, n_sessions, n_runs = len(concepts), int(n_sessions), int(n_runs)
  if n == 0:
    raise ValueError("make_design needs at least one train concept")
  if len(set(concepts)) != n:
    raise ValueError("train concepts must be unique")
  if n_sessions < 1 or n_runs < 1:
    raise ValueError(f"n_sessions and n_runs must be >= 1, got {n_sessions}, {n_runs}")
  if n % n_runs:
    raise ValueError(f"{n} train concepts cannot be spread evenly over {n_runs} runs")
  exemplars = [int(e) for e in exemplar_for_session]
  if len(exemplars) != n_sessions:
    raise ValueError(f"exemplar_for_session has {len(exemplars)} entries, expected one per session ({n_sessions})")
  if len(set(exemplars)) != n_sessions or not all(1 <= e <= 12 for e in exemplars):
    raise ValueError(f"exemplar_for_session must hold distinct numbers in 1..12, got {exemplars}")
  if len(set(test_concepts)) != len(test_concepts):
    raise ValueError("test concepts must be unique")
  unknown = [c for c in test_concepts if c not in set(concepts)]
  if unknown:
    raise ValueError(f"test concepts must be train concepts too; not among them: {unknown}")
  return concepts, test_concepts, n_sessions, n_runs, exemplars


def _run_trials(rng: np.random.Generator, train: list[tuple], tests: list[tuple], per_run: int) -> list[tuple]:
  """``(trial_type, stimulus, concept)`` of one run's trials in order: the ``train`` ``(stimulus, concept)``
  pairs in their order, the ``tests`` inserted at random gaps (never first or last when ``per_run > 1``)."""
  # Gap g = insert before the g-th train trial of the run; 1..per_run-1 keeps tests inside.
  if per_run > 1:
    gaps = rng.integers(1, per_run, size=len(tests))
  else:
    gaps = np.zeros(len(tests), dtype=np.int64)
  order = np.argsort(gaps, kind="stable")
  tests_sorted = [(int(gaps[k]), tests[k]) for k in order]
  trials = []
  for pos, (stim, concept) in enumerate(train):
    while tests_sorted and tests_sorted[0][0] == pos:
      trials.append(("test", *tests_sorted.pop(0)[1]))
    trials.append(("train", stim, concept))
  trials.extend(("test", *test) for _, test in tests_sorted)
  return trials


def _design_frame(records: list[tuple], test_stimuli: list[str], release: str) -> pd.DataFrame:
  """The StimulusMetadata DataFrame of the trial records (``trial_id`` inserted; no ``concept`` for v1)."""
  df = pd.DataFrame(records, columns=["trial_type", "session", "run", "subject_id", "stimulus", "concept"])
  df.insert(4, "trial_id", np.arange(len(df), dtype=np.int64))
  for col in ("session", "run", "subject_id", "trial_id"):
    df[col] = df[col].astype(np.int64)
  train_stimuli = df.loc[df["trial_type"] == "train", "stimulus"]
  if train_stimuli.duplicated().any() or set(train_stimuli) & set(test_stimuli):
    raise ValueError(
      "stimulus_name gives clashing file names: every train image must be shown once "
      "and no test image may also be a train image"
    )
  if release == "v1":
    df = df.drop(columns="concept")
  return df


def make_design(
  concepts: Sequence[str],
  *,
  subject_id: int,
  n_sessions: int,
  n_runs: int,
  exemplar_for_session: Sequence[int],
  test_concepts: Sequence[str],
  order_seed: int,
  stimulus_name: Callable[[str, int], str] = default_stimulus_name,
  release: str = "v2",
  order_key: str = "exemplar",
) -> pd.DataFrame:
  """StimulusMetadata rows (one per trial) of one subject, in presentation order.

  Args:
    concepts: the ``C`` train concepts (THINGS uniqueIDs); ``C % n_runs == 0``.
    subject_id: value of the ``subject_id`` column.
    n_sessions: number of sessions ``S``.
    n_runs: runs per session ``R``.
    exemplar_for_session: ``[S]`` exemplar number (1–12, all different) shown in each session.
    test_concepts: the ``T`` test concepts (a subset of ``concepts``); test concept ``t`` (0-based) has
      ONE test image, exemplar ``13 + t % 13`` (the release's test exemplars span 13–25, so names stay
      two-digit for the real 100 test concepts), shown once per session.
    order_seed: seed of the presentation order (see ``order_key``).
    stimulus_name: ``(concept, exemplar) -> file name``.
    release: ``'v2'`` (header ``trial_type,session,run,subject_id,trial_id,stimulus,concept``) or
      ``'v1'`` (the same without ``concept``).
    order_key: what the per-session order is keyed on. The order of a session is
      ``numpy.random.default_rng((order_seed, key))``'s permutation of the concepts, where ``key`` is
      the session's exemplar number (``'exemplar'``, default) or the session number (``'session'``).
      With ``'exemplar'`` two subjects with the same ``order_seed`` present e.g. all ``_01`` images in
      the same order and runs even when ``_01`` falls in different sessions for them, which is what
      the real sub-01/sub-02 do (it gives the study's 81.2 % cross-run pairs, docs/data-formats.md §8.6).

  Returns:
    DataFrame with ``S * (C + T)`` rows sorted by session, then run, in presentation order;
    ``trial_id = 0 … N-1`` in row order. Each session shows every train concept once, spread evenly
    over its runs (``C / R`` per run); test trials go to the runs round-robin (test ``t`` in run
    ``t % R + 1``) at random positions between train trials (never first or last in a run when a
    run has at least two train trials).
  """
  check_release(release)
  concepts, test_concepts, n_sessions, n_runs, exemplars = _checked_arguments(
    concepts, test_concepts, n_sessions, n_runs, exemplar_for_session, order_key
  )
  test_stimuli = [stimulus_name(c, 13 + t % 13) for t, c in enumerate(test_concepts)]
  n = len(concepts)
  per_run = n // n_runs
  records = []
  for session in range(1, n_sessions + 1):
    exemplar = exemplars[session - 1]
    rng = np.random.default_rng((int(order_seed), exemplar if order_key == "exemplar" else session))
    perm = rng.permutation(n)
    for r in range(n_runs):
      train = [(stimulus_name(concepts[ci], exemplar), concepts[ci]) for ci in perm[r * per_run : (r + 1) * per_run]]
      tests = [(test_stimuli[t], test_concepts[t]) for t in range(len(test_concepts)) if t % n_runs == r]
      for trial_type, stim, concept in _run_trials(rng, train, tests, per_run):
        records.append((trial_type, session, r + 1, int(subject_id), stim, concept))
  return _design_frame(records, test_stimuli, release)
