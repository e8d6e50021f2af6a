"""Training: state creation, the on-device train step, and the per-backend epoch driver.

Everything here works on ONE seed and is vmapped over the leading seed axis where the loop is assembled.
All randomness derives from each seed's base key (stored in the state): parameters from
fold_in(key, INIT), the epoch's shuffle from fold_in(fold_in(key, SHUFFLE), epoch), augmentation and
dropout from fold_in(fold_in(key, STEP), step). A run resumed from a checkpoint therefore replays exactly
the draws of an uninterrupted run.

Epoch drivers (measured on 2-core CPUs with jax 0.10.2; see bench/README.md): convolutions inside
`lax.scan` ran ~18x slower than the same jitted step called from Python (jax-ml/jax#12868), so on the CPU
backend an epoch is a Python loop over one jitted step: the seeds one after another on one device ("turn",
faster there than vmapping them) or seed-vmapped over several ("python"); on GPU/TPU the whole epoch is one
scanned, jitted call over the vmapped seeds ("scan"). Either way the data, shuffling and augmentation stay on
the device and metrics are read back once per epoch.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from brainalign.types import LearningRule, TrainState

# fold_in tags that separate the random streams of one seed
_INIT, _SHUFFLE, _STEP, _RULE_INIT = 0, 1, 2, 3


def seed_key_data(seeds) -> np.ndarray:
  """Raw key data [S, 2] uint32 for a list of integer seeds (the study's seeds are 42, 123, 456, 789, 1337)."""
  return np.stack([np.asarray(jax.random.key_data(jax.random.key(int(s)))) for s in seeds])


def create_train_state(
  key_data: jax.Array, *, model: Any, rule: LearningRule, image_shape: tuple[int, int, int]
) -> TrainState:
  """Initial state of one seed. key_data: [2] uint32; image_shape: (H, W, C) of the training images."""
  key = jax.random.wrap_key_data(key_data)
  variables = model.init(jax.random.fold_in(key, _INIT), jnp.zeros((1,) + tuple(image_shape)), train=False)
  params, batch_stats = variables["params"], variables["batch_stats"]
  rule_state = rule.init(params, jax.random.fold_in(key, _RULE_INIT))
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    epoch=jnp.zeros((), jnp.int32),
    key=key_data,
    params=params,
    batch_stats=batch_stats,
    rule_state=rule_state,
    opt_state=rule.optimizer.init(params),
  )


def augment(key: jax.Array, images: jax.Array, *, pad: int, flip: bool) -> jax.Array:
  """Reference augmentation: random crop of the zero-padded image + random horizontal flip.

  images: [B, H, W, C] float in [0, 1] (padding is black, before normalisation, as torchvision does).
  Returns [B, H, W, C].
  """
  b, h, w, c = images.shape
  k_crop, k_flip = jax.random.split(key)
  if pad:
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = jax.random.randint(k_crop, (b, 2), 0, 2 * pad + 1)
    crop = lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, c))
    images = jax.vmap(crop)(padded, offsets)
  if flip:
    do_flip = jax.random.bernoulli(k_flip, 0.5, (b, 1, 1, 1))
    images = jnp.where(do_flip, images[:, :, ::-1, :], images)
  return images


def normalize(images_u8: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
  """uint8 [..., 3] -> float32 (x/255 - mean) / std."""
  return (images_u8.astype(jnp.float32) / 255.0 - mean) / std


def epoch_order(key_data: jax.Array, epoch: jax.Array, n: int) -> jax.Array:
  """The shuffle of one seed's epoch: int32 [n], a permutation of the n training images.

  key_data: [2] uint32 (`TrainState.key`); epoch: int scalar. Depends on nothing else, so a resumed run
  draws the same order.
  """
  key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(key_data), _SHUFFLE), epoch)
  return jax.random.permutation(key, n).astype(jnp.int32)


def make_train_step(
  model: Any,
  rule: LearningRule,
  *,
  batch_size: int,
  steps_per_epoch: int,
  mean: np.ndarray,
  std: np.ndarray,
  pad: int,
  flip: bool,
  diagnose: bool = False,
) -> Callable:
  """Returns step(state, images_u8 [N, H, W, 3], labels [N], order=None) -> (state, metrics) for ONE seed.

  The batch is slice `state.step % steps_per_epoch` of this epoch's permutation (last partial batch dropped).
  order: that permutation, int [N] = `epoch_order(state.key, epoch, N)`, if the caller has drawn it once for
  the epoch (the epoch runners do); None draws it inside the step (same result, ~2 % of a step's time).
  diagnose: also return the rule's diagnostics (`LearningRule.update(..., diagnose=True)`); the state it
  produces is the same as without.
  """
  del model  # the rule closes over it
  mean, std = jnp.asarray(mean), jnp.asarray(std)

  def step(state: TrainState, images: jax.Array, labels: jax.Array, order: jax.Array | None = None):
    key = jax.random.wrap_key_data(state.key)
    if order is None:
      order = epoch_order(state.key, state.step // steps_per_epoch, images.shape[0])
    idx = jax.lax.dynamic_slice(order, ((state.step % steps_per_epoch) * batch_size,), (batch_size,))
    aug_key, rule_key = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, _STEP), state.step))
    x = augment(aug_key, images[idx].astype(jnp.float32) / 255.0, pad=pad, flip=flip)
    batch = {"image": (x - mean) / std, "label": labels[idx]}
    extra = {"diagnose": True} if diagnose else {}  # rules without diagnostics need not take the flag
    updates, stats, rule_state, metrics = rule.update(
      state.params, state.batch_stats, state.rule_state, batch, rule_key, **extra
    )
    updates, opt_state = rule.optimizer.update(updates, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    if rule.project is not None:
      params = rule.project(params)
    new_step = state.step + 1
    return state._replace(
      step=new_step,
      epoch=new_step // steps_per_epoch,
      params=params,
      batch_stats=stats,
      rule_state=rule_state,
      opt_state=opt_state,
    ), metrics

  return step


DRIVERS = ("auto", "python", "turn", "scan")


def resolve_driver(driver: str, devices: int = 1) -> str:
  """The epoch driver that runs: 'auto' -> 'scan' on GPU/TPU; on the CPU backend 'turn' (seeds one after
  another through one compiled one-seed step) on one device, 'python' (the seeds vmapped) over several.

  devices: how many devices the seeds are split over (`brainalign.devices.SeedMesh.size`); 'turn' needs one.
  Measured on two 2-core CPUs (bench/README.md): the seeds in turn with the XLA convolution are 1.1-1.3x
  faster than the seeds vmapped with the best convolution for vmap (im2col); vmapping a convolution over
  per-seed kernels makes it a grouped convolution, which XLA:CPU runs slowly.
  """
  if driver not in DRIVERS:
    raise ValueError(f"train.epoch_driver must be one of {DRIVERS}, got {driver!r}")
  if driver == "auto":
    if jax.default_backend() != "cpu":
      return "scan"
    return "turn" if devices == 1 else "python"
  if driver == "turn" and devices != 1:
    raise ValueError(f"train.epoch_driver='turn' runs the seeds on one device, but they are split over {devices}")
  return driver


def seeds_per_call(driver: str, n_seeds: int, devices: int = 1) -> int:
  """How many seeds one compiled step advances on each device (1 for the resolved driver 'turn')."""
  return 1 if resolve_driver(driver, devices) == "turn" else max(1, n_seeds // devices)


def make_epoch_runner(
  step: Callable,
  *,
  steps_per_epoch: int,
  driver: str,
  per_seed_data: bool = False,
  last_step: Callable | None = None,
  shardings: tuple | None = None,
) -> Callable:
  """Returns run_epoch(state [S, ...], images, labels) -> (state, {metric: [S]}) over all seeds.

  images/labels are shared by all seeds ([N, ...]) unless per_seed_data ([S, N, ...]).
  driver: see `resolve_driver`; 'turn' is a Python loop over the seeds around the 'python' driver, and gives
  each seed the same numbers as 'python' on a one-seed state (a seed's steps never see the other seeds).
  last_step: a step with the same signature and state update used for the epoch's last step instead of
  `step`, e.g. `make_train_step(..., diagnose=True)`; metrics it returns beyond `step`'s (the diagnostics)
  are reported as measured on that one batch, the others as epoch means.
  Each call runs one whole epoch from an epoch boundary (state.step a multiple of steps_per_epoch, as every
  checkpoint is); the epoch's shuffle is drawn once per seed (`epoch_order`) and shared by its steps.
  Only the metrics are copied to the host, once, at the end of the epoch.
  shardings: (seed sharding, data sharding) over a device mesh (brainalign.devices): the state, every seed's
  shuffle and the metrics stay split over the seed axis in and out of every compiled call (each device advances
  its own seeds; nothing gathers inside an epoch); the data are split the same way (per-seed data) or
  replicated. None: the default device.
  """
  data_axis = 0 if per_seed_data else None
  vstep = jax.vmap(step, in_axes=(0, data_axis, data_axis, 0))
  vlast = vstep if last_step is None else jax.vmap(last_step, in_axes=(0, data_axis, data_axis, 0))
  n_devices = 1 if shardings is None else int(shardings[0].mesh.devices.size)
  resolved = resolve_driver(driver, n_devices)
  parts = _EpochParts(vstep, vlast, steps_per_epoch, _placed_jit(None if resolved == "turn" else shardings))
  if resolved == "scan":
    return _scan_runner(parts)
  loop = _python_loop(parts, shared_last=last_step is None)
  if resolved == "turn":
    return _turn_runner(loop, per_seed_data=per_seed_data)

  def run_epoch(state, images, labels):
    state, metrics = loop(state, images, labels)
    return state, _host(metrics)  # the state stays on its devices; only the metrics come to the host

  return run_epoch


def _placed_jit(shardings: tuple | None) -> Callable:
  """jit(fn, kind, **kw) with the in/out shardings of `kind` ("step", "scan", "orders") when given."""
  if shardings is None:
    return lambda fn, kind="step", **kw: jax.jit(fn, **kw)
  seed_sh, data_sh = shardings
  place = {
    "step": ((seed_sh, data_sh, data_sh, seed_sh), (seed_sh, seed_sh)),
    "scan": ((seed_sh, data_sh, data_sh), (seed_sh, seed_sh)),
    "orders": ((seed_sh, data_sh), seed_sh),
  }
  return lambda fn, kind="step", **kw: jax.jit(fn, in_shardings=place[kind][0], out_shardings=place[kind][1], **kw)


class _EpochParts(NamedTuple):
  """What both epoch drivers are built from: the vmapped steps, the epoch length and the (placed) jit."""

  vstep: Callable
  vlast: Callable
  steps_per_epoch: int
  jit: Callable

  def orders(self, state, labels):
    """[S, N]: every seed's shuffle of this epoch, drawn once (the epoch of the state's next step)."""
    n = labels.shape[-1]
    return jax.vmap(lambda k, s: epoch_order(k, s // self.steps_per_epoch, n))(state.key, state.step)

  def combine(self, metrics, last_metrics):
    """metrics: {k: [T, S]} of the first T steps; last_metrics: {k: [S]} of the last step."""
    out = {k: (jnp.sum(v, axis=0) + last_metrics[k]) / self.steps_per_epoch for k, v in metrics.items()}
    out.update({k: v for k, v in last_metrics.items() if k not in metrics})
    return out


def _scan_runner(parts: _EpochParts) -> Callable:
  """One compiled call per epoch: the steps scanned, then the last step (GPU/TPU)."""

  def scanned(state, images, labels):
    order = parts.orders(state, labels)
    state, metrics = jax.lax.scan(
      lambda s, _: parts.vstep(s, images, labels, order), state, None, length=parts.steps_per_epoch - 1
    )
    state, last_metrics = parts.vlast(state, images, labels, order)
    return state, parts.combine(metrics, last_metrics)

  compiled = parts.jit(scanned, "scan", donate_argnums=0)

  def run_epoch(state, images, labels):
    state, metrics = compiled(state, images, labels)
    return state, _host(metrics)

  return run_epoch


def _python_loop(parts: _EpochParts, *, shared_last: bool) -> Callable:
  """A Python loop of one jitted step (CPU: convolutions inside lax.scan are slow there); returns
  loop(state, images, labels) -> (state, device metrics {k: [S]})."""
  jstep = parts.jit(parts.vstep, donate_argnums=0)
  jlast = jstep if shared_last else parts.jit(parts.vlast, donate_argnums=0)
  jcombine = jax.jit(parts.combine)
  jorders = parts.jit(parts.orders, "orders")

  def loop(state, images, labels):
    order = jorders(state, labels)
    collected = []
    for _ in range(parts.steps_per_epoch - 1):
      state, metrics = jstep(state, images, labels, order)
      collected.append(metrics)  # device arrays; no host sync inside the epoch
    state, last_metrics = jlast(state, images, labels, order)
    stacked = jax.tree.map(lambda *ms: jnp.stack(ms), *collected) if collected else {}
    return state, jcombine(stacked, last_metrics)

  return loop


def _turn_runner(loop: Callable, *, per_seed_data: bool) -> Callable:
  """The seeds one after another, each as a one-seed state through the same compiled loop (one device)."""

  def run_epoch(state, images, labels):
    n = int(state.step.shape[0])
    states, metrics = [], []
    for s in range(n):
      one = jax.tree.map(lambda x, s=s: x[s : s + 1], state)
      data = (images[s : s + 1], labels[s : s + 1]) if per_seed_data else (images, labels)
      one, m = loop(one, *data)
      states.append(one)
      metrics.append(m)
    state = jax.tree.map(lambda *xs: jnp.concatenate(xs), *states)
    return state, _host(jax.tree.map(lambda *xs: jnp.concatenate(xs), *metrics))

  return run_epoch


def _host(tree):
  """Host copies of (possibly multi-process) sharded arrays."""
  from brainalign import devices

  return devices.gather(tree)


def make_test_accuracy(
  model: Any,
  *,
  mean: np.ndarray,
  std: np.ndarray,
  chunk: int = 1000,
  logits_fn: Callable | None = None,
  mesh: Any = None,
) -> Callable:
  """Returns acc(state [S, ...], images_u8 [N, H, W, 3], labels [N]) -> np.ndarray [S] (inference mode).

  logits_fn: a rule's own fn(variables, images) -> logits (`LearningRule.logits`), None = the forward pass.
  mesh: the seed mesh the state is split over (brainalign.devices), or None."""
  mean, std = jnp.asarray(mean), jnp.asarray(std)

  def one(seed, shared):
    (p, s, r), (images, labels) = seed, shared
    x = normalize(images, mean, std)
    if logits_fn is not None:
      logits = logits_fn({"params": p, "batch_stats": s, "rule_state": r}, x)
    else:
      logits, _ = model.apply({"params": p, "batch_stats": s}, x, train=False)
    return jnp.sum(jnp.argmax(logits, -1) == labels)

  from brainalign import devices

  correct = devices.per_seed(one, mesh)  # seed by seed: the same numbers on any number of devices

  def accuracy(state, images, labels):
    seeded = (state.params, state.batch_stats, state.rule_state)
    total = sum(
      correct(seeded, (images[i : i + chunk], labels[i : i + chunk])) for i in range(0, images.shape[0], chunk)
    )
    return np.asarray(_host(total)) / images.shape[0]

  return accuracy
