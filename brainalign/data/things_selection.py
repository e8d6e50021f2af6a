"""Which trials of a subject make up each RDM row (stimulus "item"): the stimulus selection rules.

The rules (``SELECTIONS``; ``docs/methods.md`` §7, step 1), items always in concept order (Python string order):

* ``first_exemplar`` (the study): per train concept its alphabetically first stimulus, one trial
  (``select_first_exemplars``; 720 in the release, all from one session);
* ``concept_mean``: all train trials of each concept (12 exemplars in the release), averaged per concept;
* ``test_mean``: the test images (100 in the release), each averaged over its repetitions (12).

``select_trials`` returns a ``Selection``: items ``[n]``, trials ``[m]``, and from them the averaging matrix
``[n, m]``, the run labels and the images behind every row.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd

from brainalign.data.things_errors import ThingsFormatError, abbreviate

__all__ = ["SELECTIONS", "Selection", "select_first_exemplars", "select_trials"]

#: Stimulus selections / aggregations (``load_things_fmri(selection=…)``, ``config.brain.selection``).
SELECTIONS = ("first_exemplar", "concept_mean", "test_mean")


def _with_concept(md: pd.DataFrame) -> pd.DataFrame:
  """``md`` with a ``concept`` column (``stimulus.rsplit('_', 1)[0]`` when it has none)."""
  if "concept" not in md.columns:
    md = md.assign(concept=md["stimulus"].astype(str).str.rsplit("_", n=1).str[0])
  return md


def select_first_exemplars(stimulus_metadata: pd.DataFrame, *, path: str | os.PathLike | None = None) -> pd.DataFrame:
  """The study's stimulus selection: per train concept the alphabetically first stimulus.

  Train trials only; concepts sorted in Python string order (code points); for each concept the
  minimum ``stimulus`` among its train trials (exemplar ``_01`` in the release), which must have been
  shown exactly once. Trials are matched by the ``concept`` column, never by name prefix.

  Returns:
    DataFrame ``[n_concepts]`` with columns ``trial_id, stimulus, concept, session, run`` in concept
    order (RangeIndex).
  """
  where = path if path is not None else "StimulusMetadata"
  md = _with_concept(stimulus_metadata)
  train = md[md["trial_type"] == "train"]
  if train.empty:
    raise ThingsFormatError(f"{where}: no rows with trial_type == 'train'")
  first: dict[str, str] = {}
  for concept, stim in zip(train["concept"].astype(str), train["stimulus"].astype(str)):
    if concept not in first or stim < first[concept]:
      first[concept] = stim
  concepts = sorted(first)
  stim_col = train["stimulus"].astype(str).to_numpy()
  concept_col = train["concept"].astype(str).to_numpy()
  records = []
  for concept in concepts:
    hits = np.flatnonzero((concept_col == concept) & (stim_col == first[concept]))
    if hits.size != 1:
      raise ThingsFormatError(
        f"{where}: stimulus {first[concept]!r} (first exemplar of concept {concept!r}) appears in "
        f"{hits.size} train trials (trial_id {abbreviate(train['trial_id'].to_numpy()[hits].tolist())}); "
        f"expected exactly one"
      )
    row = train.iloc[int(hits[0])]
    records.append((int(row["trial_id"]), first[concept], concept, int(row["session"]), int(row["run"])))
  out = pd.DataFrame(records, columns=["trial_id", "stimulus", "concept", "session", "run"])
  for col in ("trial_id", "session", "run"):
    out[col] = out[col].astype(np.int64)
  return out


@dataclasses.dataclass(frozen=True)
class Selection:
  """Which trials make up each RDM row (stimulus "item").

  Attributes:
    items: DataFrame ``[n]`` in RDM row order with columns ``stimulus`` (the item's name: its own
      image, or for ``concept_mean`` the concept's first exemplar; ``exemplar_images`` lists every image
      of the item, whose model features are averaged under ``eval.concept_features="mean"``),
      ``concept``, ``n_trials`` (trials averaged), ``session`` and ``run`` (of the single trial;
      -1 when the item averages several trials).
    trials: DataFrame ``[m]`` with columns ``item`` (row of ``items``), ``trial_id``,
      ``stimulus`` (of that trial), ``session``, ``run``; sorted by item, then trial_id.
    selection: the rule's name (one of ``SELECTIONS``).
  """

  items: pd.DataFrame
  trials: pd.DataFrame
  selection: str

  def averaging_matrix(self) -> np.ndarray:
    """``[n, m]`` float64 with ``1 / n_trials`` where trial k belongs to item i (rows sum to 1)."""
    n, m = len(self.items), len(self.trials)
    a = np.zeros((n, m))
    item = self.trials["item"].to_numpy()
    a[item, np.arange(m)] = 1.0 / self.items["n_trials"].to_numpy()[item]
    return a

  def run_labels(self) -> np.ndarray:
    """``[n]`` int64 ``session * 100 + run`` of each single-trial item; -1 for averaged items."""
    ses, run = self.items["session"].to_numpy(np.int64), self.items["run"].to_numpy(np.int64)
    return np.where(ses >= 0, ses * 100 + run, -1).astype(np.int64)

  def trial_run_labels(self, width: int | None = None) -> np.ndarray:
    """``[n, K]`` int64 ``session * 100 + run`` of every trial averaged into each item, -1 padded.

    ``K = width`` (at least the largest ``n_trials``) or the largest ``n_trials``.
    """
    item = self.trials["item"].to_numpy(np.int64)
    labels = self.trials["session"].to_numpy(np.int64) * 100 + self.trials["run"].to_numpy(np.int64)
    counts = np.bincount(item, minlength=len(self.items))
    k = int(counts.max()) if width is None else int(width)
    if k < counts.max():
      raise ValueError(f"width {k} < the {int(counts.max())} trials of an item")
    order = np.argsort(item, kind="stable")
    slot = np.arange(item.size) - np.repeat(np.cumsum(counts) - counts, counts)  # position within its item
    out = np.full((len(self.items), k), -1, np.int64)
    out[item[order], slot] = labels[order]
    return out

  def exemplar_images(self) -> tuple[tuple[str, ...], np.ndarray]:
    """(names ``[m]``, items ``[m]`` int64): the distinct images shown in each item's trials, item by item
    (names sorted within an item). ``concept_mean``: every exemplar of the concept (12 in the release);
    ``first_exemplar``/``test_mean``: the item's one image (a test image's repetitions are one image)."""
    pairs = sorted(set(zip(self.trials["item"].astype(int), self.trials["stimulus"].astype(str))))
    return tuple(name for _, name in pairs), np.asarray([i for i, _ in pairs], np.int64)


def _first_exemplar_rows(md: pd.DataFrame, path: str | os.PathLike | None) -> tuple[pd.DataFrame, pd.DataFrame]:
  """(items, trials) of ``first_exemplar``: one trial per item."""
  sel = select_first_exemplars(md, path=path)
  items = sel[["stimulus", "concept"]].assign(n_trials=1, session=sel["session"], run=sel["run"])
  trials = sel[["trial_id", "stimulus", "session", "run"]].assign(item=np.arange(len(sel)))
  return items, trials


def _item_groups(sub: pd.DataFrame, selection: str) -> tuple[dict[str, list[int]], list[str], list[str], list[str]]:
  """Positions in ``sub`` of each item's trials, the item keys in row order, their shown names and concepts."""
  concept = sub["concept"].astype(str).to_numpy()
  stim = sub["stimulus"].astype(str).to_numpy()
  key = concept if selection == "concept_mean" else stim
  groups: dict[str, list[int]] = {}
  for k, pos in zip(key, range(len(sub))):
    groups.setdefault(k, []).append(pos)
  if selection == "concept_mean":
    order = sorted(groups)
    shown = [min(stim[p] for p in groups[k]) for k in order]
    concepts = order
  else:
    order = sorted(groups, key=lambda k: (concept[groups[k][0]], k))
    shown, concepts = order, [concept[groups[k][0]] for k in order]
  return groups, order, shown, concepts


def _averaged_rows(md: pd.DataFrame, selection: str, where) -> tuple[pd.DataFrame, pd.DataFrame]:
  """(items, trials) of ``concept_mean`` / ``test_mean``: all trials of each item; session/run -1 unless one."""
  trial_type = "train" if selection == "concept_mean" else "test"
  sub = md[md["trial_type"] == trial_type]
  if sub.empty:
    raise ThingsFormatError(f"{where}: no rows with trial_type == {trial_type!r} (needed by selection {selection!r})")
  groups, order, shown, concepts = _item_groups(sub, selection)
  recs = []
  for item, k in enumerate(order):
    for p in groups[k]:
      row = sub.iloc[p]
      recs.append((item, int(row["trial_id"]), str(row["stimulus"]), int(row["session"]), int(row["run"])))
  trials = pd.DataFrame(recs, columns=["item", "trial_id", "stimulus", "session", "run"])
  counts = trials.groupby("item").size().to_numpy()
  items = pd.DataFrame({"stimulus": shown, "concept": concepts, "n_trials": counts, "session": -1, "run": -1})
  single = counts == 1  # an item shown once keeps its run label
  if single.any():
    first = trials.drop_duplicates("item").set_index("item")
    items.loc[single, "session"] = first.loc[np.flatnonzero(single), "session"].to_numpy()
    items.loc[single, "run"] = first.loc[np.flatnonzero(single), "run"].to_numpy()
  return items, trials


def select_trials(
  stimulus_metadata: pd.DataFrame, selection: str = "first_exemplar", *, path: str | os.PathLike | None = None
) -> Selection:
  """Select (and group) the trials of one subject by a named rule.

  Rules (``SELECTIONS``; items always in concept order, Python string order):

  * ``first_exemplar`` (the study): per train concept its alphabetically first stimulus, one trial
    (``select_first_exemplars``); 720 items in the release.
  * ``concept_mean``: per train concept ALL its train trials (12 exemplars in the release), to be
    averaged; the item's ``stimulus`` (the model's image) is the concept's first exemplar.
  * ``test_mean``: per test image (``trial_type == 'test'``) all its repetitions (12 in the release),
    to be averaged; items sorted by concept, then stimulus (100 in the release).

  Returns:
    ``Selection`` (items ``[n]``, trials ``[m]``).

  Raises:
    ValueError: unknown rule. ThingsFormatError: no trials of the needed type (names the file).
  """
  where = path if path is not None else "StimulusMetadata"
  if selection not in SELECTIONS:
    raise ValueError(f"unknown stimulus selection {selection!r}; valid: {list(SELECTIONS)}")
  md = _with_concept(stimulus_metadata)
  if selection == "first_exemplar":
    items, trials = _first_exemplar_rows(md, path)
  else:
    items, trials = _averaged_rows(md, selection, where)
  trials = trials.sort_values(["item", "trial_id"], kind="stable").reset_index(drop=True)
  trials = trials[["item", "trial_id", "stimulus", "session", "run"]]
  for col in ("item", "trial_id", "session", "run"):
    trials[col] = trials[col].astype(np.int64)
  items = items.reset_index(drop=True)[["stimulus", "concept", "n_trials", "session", "run"]]
  for col in ("n_trials", "session", "run"):
    items[col] = items[col].astype(np.int64)
  return Selection(items=items, trials=trials, selection=selection)
