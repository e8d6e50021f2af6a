"""One report section (an evaluation resolution × a pair set) as named arrays over rule, seed, epoch, layer, ROI.

`compute` runs ONE compiled stimulus-bootstrap call over every condition (rule × seed × milestone × layer) ×
ROI × subject (+ the subject-mean RDM) on the run's stored model RDMs, and one for partial RSA, on the same
resamples (row 0 = the data, rows 1..B = resamples). Row 0 of the per-subject rho is the run's own
alignment.csv (the identity resample of the same comparator would give the same numbers; taking the stored
ones makes the report and the run agree by construction). Every table is a reduction of these arrays.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from brainalign import devices, stats
from brainalign.models import READOUT_LAYERS
from brainalign.report import run as run_lib
from brainalign.report import settings as settings_lib


@dataclasses.dataclass(frozen=True)
class Section:
  """Arrays of one section. Axes: B1 = 1 + B (row 0 = estimate), Ru rules, Se seeds, E epochs (union of all
  rules' milestones), L layers, R ROIs, G subjects (RDMs of one subject pooled).

  rho, rho_mean_rdm: [B1, Ru, Se, E, L, R] per-subject convention (subject mean) and mean-RDM convention;
    NaN where a rule lacks an epoch. per_subject: [G, Ru, Se, E, L, R] point estimates per subject.
  lower, upper: [B1, R] noise-ceiling bounds, NaN when there is no ceiling (see `ceiling_note`).
  layer_for: {ROI: layer} of the fixed mapping; ROIs missing from it use the best layer per seed.
  have: bool [Ru, E] the rule has that checkpoint.
  """

  res: int
  pairs_name: str
  n_pairs: int
  n_stimuli: int
  rules: list
  seeds: list
  epochs: list
  rois: list
  groups: list
  rho: np.ndarray
  rho_mean_rdm: np.ndarray
  per_subject: np.ndarray
  lower: np.ndarray
  upper: np.ndarray
  ceiling_note: str
  layer_for: dict
  have: np.ndarray
  partial: dict  # {form: [B1, C, Ru, R] subject- and seed-mean partial rho}; {} if not computed
  controls: tuple  # names of the partial-RSA controls, in axis C order
  heatmap_vectors: dict  # {(rule, epoch, layer): [P] first seed's model RDM over all pairs}

  def selected(self, arr: np.ndarray) -> np.ndarray:
    """[..., Ru, Se, E, L, R] -> [..., Ru, Se, E, R]: each ROI's mapped layer, or the per-seed best layer."""
    best = np.max(arr, axis=-2)
    out = best.copy()
    for r, roi in enumerate(self.rois):
      if roi in self.layer_for:
        out[..., r] = arr[..., READOUT_LAYERS.index(self.layer_for[roi]), r]
    return out

  def layer_label(self, roi: str) -> str:
    """The layer column of a table row: the mapped layer, or 'best'."""
    return self.layer_for.get(roi, "best")

  @property
  def last_idx(self) -> np.ndarray:
    """[Ru] index of each rule's last checkpoint."""
    return np.array([np.flatnonzero(h)[-1] for h in self.have])

  @property
  def static(self) -> np.ndarray:
    """[Ru] the rule was evaluated at one checkpoint only (e.g. the untrained network)."""
    return self.have.sum(axis=1) == 1


def _resample_mesh():
  """All devices share the resamples (None on one device); the results do not depend on the device count."""
  return devices.resample_mesh() if jax.device_count() > 1 else None


def resample_indices(n: int, settings) -> jax.Array:
  """int32 [B + 1, n]: the identity (row 0, the estimate) then B stimulus resamples from stats.bootstrap_seed;
  every section and every statistic of a report uses these rows."""
  key = jax.random.key(int(settings.bootstrap_seed))
  return jnp.concatenate([stats.identity_resample(n), stats.draw_resamples(key, int(settings.bootstrap_samples), n)])


def _grid(run: run_lib.Run, values: np.ndarray, epochs: list) -> np.ndarray:
  """[B1, V, ...] in `run.conditions` order -> [B1, Ru, Se, E, L, ...], NaN where a rule lacks an epoch."""
  c = run.conditions
  out = np.full(
    (values.shape[0], len(run.rules), len(run.seeds), len(epochs), len(READOUT_LAYERS), *values.shape[2:]), np.nan
  )
  idx = tuple(
    c[col].map({v: k for k, v in enumerate(vals)}).to_numpy()
    for col, vals in (("rule", run.rules), ("seed", run.seeds), ("epoch", epochs), ("layer", READOUT_LAYERS))
  )
  out[(slice(None), *idx)] = values
  return out


def _pool_groups(rho: np.ndarray, groups: tuple) -> tuple[np.ndarray, list]:
  """[..., S] RDM axis -> [..., G]: the mean over each subject's RDMs (sessions kept separate are pooled)."""
  names = list(dict.fromkeys(groups))
  g = np.asarray([names.index(x) for x in groups])
  return np.stack([rho[..., g == k].mean(axis=-1) for k in range(len(names))], axis=-1), names


def _ceiling_note(run: run_lib.Run, comparator: str) -> str:
  brain = run.probe.brain
  s, groups = len(brain.subjects), list(dict.fromkeys(brain.groups()))
  if s < 2:
    return (
      "no noise ceiling: the data have a single RDM per ROI (a ceiling needs at least two independent "
      "RDMs); point estimates and stimulus-bootstrap CIs only"
    )
  kind = (
    "leave-one-subject-out"
    if len(groups) == s
    else (
      f"leave-one-RDM-out over {s} RDMs of {len(groups)} subjects (each held-out RDM against the pool of the others, "
      "which include the same subject's other sessions, so the bound is optimistic about new subjects)"
    )
  )
  return f"raw Nili bounds ({kind} lower, all-RDMs upper), pooled as rsatoolbox pools for `{comparator}`"


def compute(run: run_lib.Run, res: int, pairs_name: str, s, resamples: jax.Array, progress=None) -> Section:
  """Bootstraps one section (see the module docstring). s: resolved stats settings (`settings.resolve`).
  progress: a `brainalign.report.progress.SectionProgress` (its bar and estimate), or None."""
  brain, flat = run.probe.brain, run.probe.flat[pairs_name]
  n = len(brain.stimuli)
  i, j = np.triu_indices(n, k=1)
  pairs = (i[flat], j[flat])
  model = run.vectors[res][:, flat]  # [V, P']
  brain_v = np.asarray(brain.rdm_vectors[..., flat], np.float32)  # [S, R, P']
  out = stats.bootstrap_rsa(
    model,
    brain_v,
    pairs,
    resamples,
    n=n,
    method=s.comparator,
    batch_size=int(s.batch_size),
    model_chunk=int(s.model_chunk),
    mean_rdm=True,
    mesh=_resample_mesh(),
    **_chunking(progress, 0, resamples),
  )
  rho_rdm = np.asarray(out["rho"], np.float64)  # [B1, V, R, S]
  if s.comparator == "spearman":  # the run's own numbers: equal to alignment.csv by construction
    rho_rdm[0] = run_lib.identity_rho(run, res, pairs_name)
  rho_g, groups = _pool_groups(rho_rdm, brain.groups())
  epochs = sorted(set(run.conditions.epoch))
  have = np.zeros((len(run.rules), len(epochs)), bool)
  for rule, epoch in set(zip(run.conditions.rule, run.conditions.epoch)):
    have[run.rules.index(rule), epochs.index(epoch)] = True
  sec = Section(
    res=res,
    pairs_name=pairs_name,
    n_pairs=len(flat),
    n_stimuli=n,
    rules=run.rules,
    seeds=run.seeds,
    epochs=epochs,
    rois=list(brain.rois),
    groups=groups,
    rho=_grid(run, rho_g.mean(-1), epochs),
    rho_mean_rdm=_grid(run, np.asarray(out["rho_mean_rdm"], np.float64), epochs),
    per_subject=np.moveaxis(_grid(run, rho_g[:1], epochs)[0], -1, 0),
    lower=np.asarray(out["noise_lower"], np.float64),
    upper=np.asarray(out["noise_upper"], np.float64),
    ceiling_note=_ceiling_note(run, s.comparator),
    layer_for={r: la for r, la in settings_lib.layer_mapping(s.layer_for_roi).items() if r in brain.rois},
    have=have,
    partial={},
    controls=(),
    heatmap_vectors={},
  )
  partial = _partial(run, sec, s, model, brain_v, pairs, resamples, progress)
  return dataclasses.replace(sec, **partial, heatmap_vectors=_heatmaps(run, sec, res, s))


def _chunking(progress, part: int, resamples) -> dict:
  """chunk/progress arguments of the bootstraps: a few resamples per call when progress is shown."""
  if progress is None:
    return {}
  from brainalign.report.progress import chunk_size

  return {"chunk": chunk_size(int(resamples.shape[0])), "progress": progress.callback(part)}


def bootstrap_parts(run: run_lib.Run, res: int) -> int:
  """How many bootstraps a section runs: RSA, plus partial RSA where the run stored control RDMs."""
  return 1 + bool(run.probe.controls.get(res))


def _partial(run, sec: Section, s, model, brain_v, pairs, resamples, progress=None) -> dict:
  """Partial RSA (pixel and luminance RDMs controlled) at each rule's last checkpoint and each ROI's layer (the
  mapped one, or the seed's best by the point estimate), on the same resamples. -> {partial, controls}."""
  controls = run.probe.controls.get(sec.res)
  if not controls:
    return {"partial": {}, "controls": ()}
  flat = run.probe.flat[sec.pairs_name]
  names = tuple(controls)
  ctrl = np.stack([np.asarray(controls[k])[flat] for k in names])
  best = np.argmax(np.nan_to_num(sec.rho[0], nan=-np.inf), axis=-2)  # [Ru, Se, E, R]
  index = {(r, sd, e, la): k for k, (r, sd, e, la) in enumerate(run.conditions.itertuples(index=False, name=None))}
  rows = np.empty((len(sec.rules), len(sec.rois), len(sec.seeds)), np.int64)
  for a, rule in enumerate(sec.rules):
    e = sec.last_idx[a]
    for r, roi in enumerate(sec.rois):
      for k, seed in enumerate(sec.seeds):
        layer = sec.layer_for.get(roi) or READOUT_LAYERS[best[a, k, e, r]]
        rows[a, r, k] = index[(rule, seed, sec.epochs[e], layer)]
  uniq, inv = np.unique(rows, return_inverse=True)
  s_count, r_count = brain_v.shape[:2]
  out = stats.bootstrap_partial(
    model[uniq],
    brain_v.reshape(s_count * r_count, -1),
    ctrl,
    pairs,
    resamples,
    n=sec.n_stimuli,
    forms=settings_lib.partial_forms(s),
    batch_size=int(s.batch_size),
    mesh=_resample_mesh(),
    **_chunking(progress, 1, resamples),
  )
  v_idx = inv.reshape(rows.shape)[..., None]  # [Ru, R, Se, 1]
  k_idx = (np.arange(s_count)[None, :] * r_count + np.arange(r_count)[:, None])[None, :, None, :]  # [1, R, 1, S]
  partial = {form: np.asarray(arr, np.float64)[:, :, v_idx, k_idx].mean(axis=(-2, -1)) for form, arr in out.items()}
  return {"partial": partial, "controls": names}  # {form: [B1, C, Ru, R]}


def _heatmaps(run, sec: Section, res: int, s) -> dict:
  """The first seed's model RDM of each rule at the heatmap epoch (stats.rdm_epoch) in conv1 (stored vectors)."""
  want = int(s.rdm_epoch)
  out = {}
  c = run.conditions
  for a, rule in enumerate(sec.rules):
    avail = [e for k, e in enumerate(sec.epochs) if sec.have[a, k]]
    epoch = avail[-1] if want < 0 or want not in avail else want
    key = (rule, sec.seeds[0], epoch, READOUT_LAYERS[0])
    row = c.index[(c.rule == key[0]) & (c.seed == key[1]) & (c.epoch == key[2]) & (c.layer == key[3])][0]
    out[(rule, epoch, READOUT_LAYERS[0])] = run.vectors[res][row]
  return out
