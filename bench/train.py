"""Benchmark of the BP training step: 1 seed, S seeds vmapped, S seeds one after another; both conv impls; PyTorch.

    python bench/train.py [--steps 2] [--reps 5] [--seeds 5] [--impls im2col,xla] [--no-torch] [--malloc-hugetlb]
                          [--rules fa,pc,stdp]

What is timed is exactly the library's training path: `rules.create("bp", ...)` (reference optimiser:
clip 1.0 -> L2 1e-4 -> Adam(1e-3) -> per-epoch cosine), `train.make_train_step` (batch 128 drawn from this
epoch's on-device permutation of 8,000 uint8 32-px images, crop + flip augmentation on the device) and
`train.make_epoch_runner` (driver "python": a Python loop of one jitted seed-vmapped step; the pipeline's
"auto" driver on one CPU device runs the seeds in turn through the same loop, on GPU/TPU one scanned call).
The images are random uint8 pixels (timings do not depend on the pixel values).

Each configuration is a "block" of `--steps` steps through the library's epoch runner (the runner's loop length
is set to --steps; the step itself still shuffles with the real 62 steps per epoch), followed by
jax.block_until_ready. The first block of every configuration is the warm-up; the compile time reported is what
jax.monitoring records during it (tracing + lowering + XLA compilation). Then `--reps` repetitions of all
configurations run interleaved (so a change in the machine's load hits all of them alike) and the median block
time is reported, with the median process CPU time (user + sys), which other processes on the machine disturb less.

  1 seed      the runner on a [1]-seed state
  S vmapped   the runner on an [S]-seed state (the "python" driver; the pipeline's on several CPU devices)
  S in turn   S separate [1]-seed states, each advanced one block by the same runner, one after another (the
              "turn" driver, the pipeline's "auto" on one CPU device)

The PyTorch reference (if importable) is the same network (NCHW, BN momentum 0.1 eps 1e-5, dropout 0.3),
Adam(1e-3, weight_decay=1e-4) + clip_grad_norm_(1.0), cross-entropy, the same batch size, per-epoch randperm
and crop/flip augmentation done with torch ops on the same uint8 images, torch.set_num_threads(#cores). It is
timed the same way, interleaved with the JAX repetitions, and compared with the JAX single seed of the conv
implementation that "auto" picks for one seed: speed_vs_torch = torch time per step / brainalign time per step.

Learning rules (--rules, default fa,pc,stdp with their brainalign/configs/common.py variants; `pc/standard`
picks another):
each rule's 1-seed step through the same library path (bench/rules.py's `make_case`, diagnostics off), timed in
the same interleaved repetitions as a BP case built the same way, printed as step_cost_vs_bp[<rule>]=<ratio>.

driver_speedup = (the other driver with its "auto" conv) / (the "auto" driver with its "auto" conv), for S seeds:
how much the driver "auto" chooses gains over the alternative on this machine.
The last line is vmap_speedup = (S in turn) / (S vmapped) for the conv implementation "auto" uses to vmap S seeds.
"""

import argparse
import datetime
import functools
import importlib.util
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax
import jax.numpy as jnp
import numpy as np
from jax import monitoring

from brainalign import models, rules, train
from brainalign.configs import common
from brainalign.data import training_sets

BATCH = 128
NUM_TRAIN = 8000
IMAGE_SIZE = 32


def cpu_model() -> str:
  try:
    out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
      if line.startswith("Model name:"):
        return line.split(":", 1)[1].strip()
  except (OSError, subprocess.CalledProcessError):
    pass
  return platform.processor() or "unknown"


_COMPILE_EVENTS = (
  "/jax/core/compile/jaxpr_trace_duration",
  "/jax/core/compile/jaxpr_to_mlir_module_duration",
  "/jax/core/compile/backend_compile_duration",
)
_compile_s = [0.0]


def _on_event(name: str, secs: float, **_):
  if name in _COMPILE_EVENTS:
    _compile_s[0] += secs


monitoring.register_event_duration_secs_listener(_on_event)


def _cpu_s() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def timed(fn) -> tuple[float, float]:
  """(wall s, process CPU s = user + sys of all threads) of one call."""
  t, c = time.perf_counter(), _cpu_s()
  fn()
  return time.perf_counter() - t, _cpu_s() - c


class JaxCase:
  """The library's BP step for one conv implementation: a [1]-seed runner, [S]-seed state, S [1]-seed states."""

  def __init__(self, conv_impl: str, seeds: list[int], steps: int, images, labels):
    config = common.base_config()
    rc = config.rule_configs.bp
    model_cfg = dict(config.model.to_dict(), conv_impl=conv_impl, conv_init=rc.conv_init, conv_bias=rc.conv_bias)
    self.model = models.create_model(_AttrDict(model_cfg))
    steps_per_epoch = NUM_TRAIN // BATCH
    rule = rules.create("bp", self.model, rc, steps_per_epoch=steps_per_epoch)
    mean = np.asarray(training_sets.CIFAR10_MEAN, np.float32)
    std = np.asarray(training_sets.CIFAR10_STD, np.float32)
    step = train.make_train_step(
      self.model,
      rule,
      batch_size=BATCH,
      steps_per_epoch=steps_per_epoch,
      mean=mean,
      std=std,
      pad=config.train.augment_pad,
      flip=config.train.augment_flip,
    )
    # one runner serves every state size (jit specialises on the [S] axis); "python" vmaps whatever seeds it is
    # given, the 'turn' case below advances [1]-seed states one after another (what the "turn" driver does)
    self.run = train.make_epoch_runner(step, steps_per_epoch=steps, driver="python")
    init = jax.jit(
      jax.vmap(
        functools.partial(
          train.create_train_state, model=self.model, rule=rule, image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3)
        )
      )
    )
    keys = jnp.asarray(train.seed_key_data(seeds))
    self.vstate = init(keys)  # [S, ...]
    self.singles = [init(keys[i : i + 1]) for i in range(len(seeds))]  # S x [1, ...]
    self.images, self.labels = images, labels

  def one(self):
    self.singles[0], _ = self.run(self.singles[0], self.images, self.labels)
    jax.block_until_ready(self.singles[0])

  def vmapped(self):
    self.vstate, _ = self.run(self.vstate, self.images, self.labels)
    jax.block_until_ready(self.vstate)

  def in_turn(self):
    for i in range(len(self.singles)):
      self.singles[i], _ = self.run(self.singles[i], self.images, self.labels)
    jax.block_until_ready(self.singles)


class _AttrDict(dict):
  __getattr__ = dict.__getitem__


class TorchCase:
  """The same network, optimiser, batch and augmentation in PyTorch (single seed)."""

  def __init__(self, images_u8: np.ndarray, labels: np.ndarray, steps: int):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    self.torch, self.F, self.steps = torch, F, steps
    torch.set_num_threads(os.cpu_count())
    self.device = torch.device("cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    self.gen = torch.Generator(device=self.device).manual_seed(0)
    dev = self.device
    self.data = torch.from_numpy(images_u8).permute(0, 3, 1, 2).contiguous().to(dev)  # [N, 3, H, W] uint8
    self.labels = torch.from_numpy(labels.astype(np.int64)).to(dev)
    self.mean = torch.tensor(training_sets.CIFAR10_MEAN, device=dev).view(1, 3, 1, 1)
    self.std = torch.tensor(training_sets.CIFAR10_STD, device=dev).view(1, 3, 1, 1)
    layers, cin = [], 3
    for width in (32, 64, 128):
      layers += [
        nn.Conv2d(cin, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width, eps=1e-5, momentum=0.1),
        nn.ReLU(),
        nn.MaxPool2d(2),
      ]
      cin = width
    self.net = nn.Sequential(
      *layers,
      nn.AdaptiveAvgPool2d(4),
      nn.Flatten(),
      nn.Linear(2048, 512),
      nn.ReLU(),
      nn.Dropout(0.3),
      nn.Linear(512, 10),
    ).to(dev)
    self.net.train()
    self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-3, weight_decay=1e-4)
    self.steps_per_epoch = NUM_TRAIN // BATCH
    self.arange = torch.arange(IMAGE_SIZE, device=dev)
    self.bidx = torch.arange(BATCH, device=dev)[:, None, None, None]
    self.cidx = torch.arange(3, device=dev)[None, :, None, None]
    self.i, self.perm = 0, None

  def _step(self):
    torch, F = self.torch, self.F
    j = self.i % self.steps_per_epoch
    if j == 0:
      self.perm = torch.randperm(NUM_TRAIN, generator=self.gen, device=self.device)
    idx = self.perm[j * BATCH : (j + 1) * BATCH]
    x = F.pad(self.data[idx].float() / 255.0, (4, 4, 4, 4))  # black padding, as torchvision
    off = torch.randint(0, 9, (BATCH, 2), generator=self.gen, device=self.device)
    rows = (off[:, :1] + self.arange)[:, None, :, None]
    cols = (off[:, 1:] + self.arange)[:, None, None, :]
    x = x[self.bidx, self.cidx, rows, cols]  # random 32x32 crops
    flip = torch.rand(BATCH, generator=self.gen, device=self.device) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    x = (x - self.mean) / self.std
    loss = F.cross_entropy(self.net(x), self.labels[idx])
    self.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
    self.opt.step()
    self.i += 1
    return loss

  def block(self):
    for _ in range(self.steps):
      loss = self._step()
    loss.item()  # waits for the device (and the host) to finish
    if self.device.type == "cuda":
      self.torch.cuda.synchronize()


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--steps", type=int, default=2, help="training steps per timed block")
  p.add_argument("--reps", type=int, default=5, help="timed repetitions (median reported)")
  p.add_argument("--seeds", type=int, default=5, help="seeds vmapped / run in turn")
  p.add_argument("--impls", default="im2col,xla", help="conv implementations to time (comma-separated)")
  p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
  p.add_argument(
    "--rules",
    default="fa,pc,stdp",
    help="rules (rule or rule/variant) timed against BP: step_cost_vs_bp lines; '' = none",
  )
  p.add_argument(
    "--malloc-hugetlb",
    action="store_true",
    help="re-run this script with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (transparent huge pages for "
    "malloc'd memory: removes most page faults of XLA's per-call temp buffers; glibc >= 2.35)",
  )
  args = p.parse_args()
  if args.malloc_hugetlb and "glibc.malloc.hugetlb" not in os.environ.get("GLIBC_TUNABLES", ""):
    tun = ":".join(filter(None, [os.environ.get("GLIBC_TUNABLES", ""), "glibc.malloc.hugetlb=1"]))
    os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, GLIBC_TUNABLES=tun))
  impls = [s for s in args.impls.split(",") if s]
  driver = train.resolve_driver("auto")  # on one device
  auto = models.resolve_conv_impl("auto", train.seeds_per_call("auto", args.seeds))  # for the chosen driver
  seeds = list(common.STUDY_SEEDS[: args.seeds]) + list(range(1000, 1000 + max(0, args.seeds - 5)))
  S, n = args.seeds, args.steps

  print(f"date: {datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}")
  print(
    f"jax {jax.__version__}, backend {jax.default_backend()}, device {jax.devices()[0].device_kind} "
    f"({jax.devices()[0]}), cpu {cpu_model()} x {os.cpu_count()}, python {platform.python_version()}"
  )
  print(
    f"batch {BATCH}, {NUM_TRAIN} uint8 {IMAGE_SIZE}px images on the device, seeds {S}, "
    f"{n} steps/block, {args.reps} reps; conv_impl 'auto' -> {auto!r}; "
    f"epoch driver 'auto' -> {driver!r}; load avg {os.getloadavg()[0]:.2f}"
  )
  print(f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '')!r} XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")

  rng = np.random.default_rng(0)
  images_np = rng.integers(0, 256, (NUM_TRAIN, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
  labels_np = rng.integers(0, 10, (NUM_TRAIN,)).astype(np.int32)
  images, labels = jax.device_put(images_np), jax.device_put(labels_np)

  # case name -> function that runs one timed block
  cases, first = {}, {}
  for impl in impls:
    c = JaxCase(impl, seeds, n, images, labels)
    cases[f"{impl}/1"], cases[f"{impl}/vmap"], cases[f"{impl}/turn"] = c.one, c.vmapped, c.in_turn
  torch_case = None
  if not args.no_torch:
    try:
      import torch

      if jax.default_backend() == "gpu" and not torch.cuda.is_available():
        print("torch: installed without CUDA; comparison skipped on this GPU backend")
      else:
        torch_case = TorchCase(images_np, labels_np, n)
        cases["torch/1"] = torch_case.block
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {torch_case.device}")
    except ImportError:
      print("torch: not importable; comparison skipped")

  rule_names = [r for r in args.rules.split(",") if r]
  if rule_names:  # bench/rules.py builds each rule's step exactly as the pipeline does
    spec = importlib.util.spec_from_file_location("bench_rules", os.path.join(os.path.dirname(__file__), "rules.py"))
    bench_rules = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_rules)
    for r in ["bp"] + rule_names:
      name, _, variant = r.partition("/")
      cases[f"rule:{r}"] = functools.partial(
        bench_rules.make_case(name, variant or None, seeds[:1], n, False), images, labels
      )

  # warm-up (compilation), in the order: 1 seed (compiles the [1] program, reused by 'turn'), vmap, turn
  compile_s = {}
  for name, fn in cases.items():
    before = _compile_s[0]
    first[name] = timed(fn)[0]
    compile_s[name] = _compile_s[0] - before  # trace + lowering + XLA compile (jax.monitoring)
    print(f"  warm-up {name:14s} {first[name]:7.2f} s (compile {compile_s[name]:.1f} s)", flush=True)
  times = {name: [] for name in cases}
  cpus = {name: [] for name in cases}
  for r in range(args.reps):
    for name, fn in cases.items():
      time.sleep(0.3)  # let the previous case's worker threads (XLA, OpenMP) go idle
      wall, cpu = timed(fn)
      times[name].append(wall)
      cpus[name].append(cpu)
    print(
      f"  rep {r + 1}/{args.reps}: "
      + ", ".join(f"{k} {v[-1] / n * 1e3:.0f}" for k, v in times.items())
      + f" ms/step; load {os.getloadavg()[0]:.2f}",
      flush=True,
    )
  med = {k: statistics.median(v) / n for k, v in times.items()}  # seconds per step (all seeds)
  best = {k: min(v) / n for k, v in times.items()}
  med_cpu = {k: statistics.median(v) / n for k, v in cpus.items()}

  print(
    f"\nresults (median of {args.reps} x {n} steps; one step = one batch of {BATCH} for every seed; "
    "cpu = process CPU time, less sensitive than wall time to other processes on the machine)"
  )
  print(
    f"{'case':16s} {'s/step':>8s} {'steps/s':>8s} {'seed-steps/s':>13s} {'min s/step':>11s} {'cpu s/step':>11s} "
    f"{'compile s':>10s}"
  )
  for name in cases:
    seeds_in = S if name.endswith(("/vmap", "/turn")) else 1
    print(
      f"{name:16s} {med[name]:8.3f} {1 / med[name]:8.2f} {seeds_in / med[name]:13.2f} {best[name]:11.3f} "
      f"{med_cpu[name]:11.3f} "
      f"{compile_s[name] if not name.endswith(('/turn', 'torch/1')) else float('nan'):10.1f}"
    )
  for impl in impls:
    turn_times, vmap_times = times[f"{impl}/turn"], times[f"{impl}/vmap"]
    print(
      f"vmap_speedup[{impl}]={med[f'{impl}/turn'] / med[f'{impl}/vmap']:.3f}  "
      f"(paired per-rep median {statistics.median(t / v for t, v in zip(turn_times, vmap_times)):.3f}; "
      f"cpu-time ratio {med_cpu[f'{impl}/turn'] / med_cpu[f'{impl}/vmap']:.3f})"
    )
  if len(impls) > 1:
    fastest = min(impls, key=lambda i: med[f"{i}/1"])
    print(f"fastest single seed: {fastest}; 'auto' picks {auto}")
    fastest_s = min(impls, key=lambda i: min(med[f"{i}/vmap"], med[f"{i}/turn"]))
    way = "vmapped" if med[f"{fastest_s}/vmap"] <= med[f"{fastest_s}/turn"] else "in turn"
    print(f"fastest {S} seeds: {fastest_s} {way}")
  ref = auto if auto in impls else impls[0]
  one_seed = models.resolve_conv_impl("auto", 1)
  ref1 = one_seed if one_seed in impls else impls[0]
  chosen = "turn" if driver == "turn" else "vmap"
  other = "vmap" if chosen == "turn" else "turn"
  other_impl = models.resolve_conv_impl("auto", args.seeds if other == "vmap" else 1)
  if f"{other_impl}/{other}" in med and f"{ref}/{chosen}" in med:
    print(
      f"driver_speedup={med[f'{other_impl}/{other}'] / med[f'{ref}/{chosen}']:.3f}  (the 'auto' driver for {S} "
      f"seeds, {ref}/{chosen} {med[f'{ref}/{chosen}'] * 1e3:.0f} ms per step of all seeds, against the other "
      f"driver with its own 'auto' convolution, {other_impl}/{other} {med[f'{other_impl}/{other}'] * 1e3:.0f} ms)"
    )
  if torch_case is not None:
    print(
      f"speed_vs_torch: from minima {best['torch/1'] / best[f'{ref1}/1']:.3f}, from CPU time "
      f"{med_cpu['torch/1'] / med_cpu[f'{ref1}/1']:.3f} (PyTorch's OpenMP threads spin while waiting, which "
      "inflates its wall and CPU time when other processes load the machine)"
    )
    print(
      f"speed_vs_torch={med['torch/1'] / med[f'{ref1}/1']:.3f}  ({ref1}, single seed; "
      f"torch {med['torch/1'] * 1e3:.0f} ms/step vs brainalign {med[f'{ref1}/1'] * 1e3:.0f} ms/step)"
    )
  for r in rule_names:
    print(
      f"step_cost_vs_bp[{r}]={med[f'rule:{r}'] / med['rule:bp']:.3f}  "
      f"({med[f'rule:{r}'] * 1e3:.0f} vs {med['rule:bp'] * 1e3:.0f} ms/step, 1 seed, diagnostics off)"
    )
  print(f"load avg at the end {os.getloadavg()[0]:.2f}")
  vref = models.resolve_conv_impl("auto", args.seeds)  # the convolution 'auto' uses when it vmaps S seeds
  vref = vref if vref in impls else impls[0]
  print(f"vmap_speedup={med[f'{vref}/turn'] / med[f'{vref}/vmap']:.3f}  ({vref})")


if __name__ == "__main__":
  main()
