"""Every device of every process (brainalign.devices): simulated CPU devices in subprocesses
(XLA_FLAGS=--xla_force_host_platform_device_count=N), two processes with jax.distributed on 127.0.0.1.

Oracles: the same computation on one device in this process (exact where the computation is the same per seed
and per resample; trained rules within a tolerance set against the seed-to-seed spread, see below), the
placement of the state after a step, and which process wrote which file.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import rdm_fixture

from brainalign import devices, pipeline

ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "device_run.py"


def _env(n_devices: int) -> dict:
  env = os.environ.copy()
  env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n_devices}"
  env["JAX_PLATFORMS"] = "cpu"
  return env


def _python(code: str, n_devices: int) -> dict:
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(n_devices), cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = tmp_path_factory.mktemp("devices")
  rdm_fixture.write(root / "data")
  return root


def _run(data, workdir, n_devices, *extra, check=True) -> subprocess.CompletedProcess:
  cmd = [sys.executable, str(RUNNER), str(data / "data"), str(data / "cache"), str(workdir), *extra]
  proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(n_devices), cwd=ROOT)
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.fixture(scope="module")
def one_device(data):
  """random + bp, 4 seeds, on the one device of this process."""
  c = rdm_fixture.config(rdm_fixture.locate(data / "data"), data / "cache", rules=("random", "bp"))
  c.seeds = (1, 2, 3, 4)
  pipeline.run(c, str(data / "one"))
  return data / "one"


def test_four_devices_give_the_one_device_results(data, one_device):
  """4 simulated devices, 4 seeds (one per device): alignment.csv and training.csv equal one device's exactly for
  the untrained network (extraction runs seed by seed, so the float program is the same); for BP within
  0.25 x the median |rho(seed a) - rho(seed b)|: a vmap of 1 seed per device instead of 4 rounds the training
  step's float32 sums differently, and Adam carries that through the epoch; the device count must change the
  result far less than the seed does. run_info.json records the mesh."""
  out = json.loads(_run(data, data / "four", 4, "--rules=random,bp", "--seeds=1,2,3,4").stdout.splitlines()[-1])
  assert out["mesh"]["mesh_shape"] == {"seeds": 4} and out["mesh"]["device_count"] == 4
  for name, col in (("alignment", "rho"), ("training", "test_accuracy")):
    a, b = (pd.read_csv(d / "results" / f"{name}.csv") for d in (one_device, data / "four"))
    ra, rb = a[a.rule == "random"], b[b.rule == "random"]
    np.testing.assert_array_equal(ra[col].to_numpy(), rb[col].to_numpy())
  a, b = (pd.read_csv(d / "results" / "alignment.csv") for d in (one_device, data / "four"))
  bp_a, bp_b = a[a.rule == "bp"], b[b.rule == "bp"]
  spread = np.median(np.abs(bp_a[bp_a.seed == 1].rho.to_numpy() - bp_a[bp_a.seed == 2].rho.to_numpy()))
  assert np.max(np.abs(bp_a.rho.to_numpy() - bp_b.rho.to_numpy())) < 0.25 * spread


PLACEMENT = """
import json, numpy as np, jax, jax.numpy as jnp
from brainalign import devices, rsa, stats, train, rule_run
from brainalign.data import training_sets
from brainalign.configs import common
out = {}
sm = devices.seed_mesh(4)
c = common.base_config(); c.seeds = (1, 2, 3, 4); c.train.batch_size = 8; c.data.num_train = 16
rng = np.random.default_rng(0)
ts = training_sets.TrainingSet(rng.integers(0, 256, (4, 16, 32, 32, 3), dtype=np.uint8),
  rng.integers(0, 10, (4, 16)).astype(np.int32), np.zeros((4, 32, 32, 3), np.uint8), np.zeros(4, np.int32),
  np.full(3, .5, np.float32), np.full(3, .25, np.float32), "x", subset="per_seed", seeds=(1, 2, 3, 4))
su = rule_run.setup(c, "bp", ts, sm)
import functools
init = jax.jit(jax.vmap(functools.partial(train.create_train_state, model=su.model, rule=su.rule,
  image_shape=(32, 32, 3))), out_shardings=sm.seeds)
state = init(devices.put(train.seed_key_data(c.seeds), sm.seeds))
run = rule_run._epoch_runner(c, su, ts)
state, _ = run(state, devices.put(ts.train_images, sm.seeds), devices.put(ts.train_labels, sm.seeds))
specs = {tuple(leaf.sharding.spec) for leaf in jax.tree.leaves(state)}
out["state_specs"] = sorted(list(x) for x in specs)
out["state_devices"] = sorted({len(leaf.sharding.device_set) for leaf in jax.tree.leaves(state)})
n = 16; p = n * (n - 1) // 2
f = [rng.normal(size=(4, 3, n, d)).astype(np.float32) for d in (5, 9)]
brain = rng.random((3, 2, p)).astype(np.float32)
ranks = rsa.rank_brain(jnp.asarray(brain))
v1 = rsa.model_rdms([jnp.asarray(x) for x in f])
v4 = rsa.model_rdms([devices.put(x, sm.seeds) for x in f], mesh=sm.mesh)
out["rdms_equal"] = bool(np.array_equal(np.asarray(v1), np.asarray(devices.gather(v4))))
flat = np.arange(0, p, 2)
sub = rsa.rank_brain(jnp.asarray(brain[..., flat]))
r1 = rsa.spearman_at(v1, sub, flat)
r4 = rsa.spearman_at(v4, devices.put(np.asarray(sub), sm.replicated), flat, mesh=sm.mesh)
out["rsa_equal"] = bool(np.array_equal(np.asarray(r1), np.asarray(devices.gather(r4))))
out["rsa_spec"] = list(r4.sharding.spec)
draws = np.asarray(stats.draw_resamples(jax.random.key(3), 9, n))
res = np.concatenate([np.asarray(stats.identity_resample(n)), draws])
m = np.asarray(v1).reshape(-1, p)
pairs = rsa.pair_indices(n)
a = stats.bootstrap_rsa(m, brain, pairs, res, n=n, mean_rdm=True)
b = stats.bootstrap_rsa(m, brain, pairs, res, n=n, mean_rdm=True, mesh=devices.resample_mesh())
out["bootstrap_equal"] = all(np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True) for k in a)
pa = stats.bootstrap_partial(m, brain.reshape(6, p), m[:2], pairs, res, n=n)
pb = stats.bootstrap_partial(m, brain.reshape(6, p), m[:2], pairs, res, n=n, mesh=devices.resample_mesh())
out["partial_equal"] = all(np.array_equal(np.asarray(pa[k]), np.asarray(pb[k]), equal_nan=True) for k in pa)
out["meshes"] = {str(k): devices.seed_mesh(k).info["mesh_shape"]["seeds"] for k in (1, 2, 3, 4, 5, 6, 8)}
out["requested"] = devices.seed_mesh(4, 2).info["mesh_shape"]["seeds"]
out["note_3"] = devices.seed_mesh(3).info["note"]
print(json.dumps(out))
"""


def test_placement_and_per_device_grids_and_bootstrap_on_four_devices():
  """After a training epoch every leaf of the state is split over the `seeds` axis of 4 devices; the model-RDM
  and RSA grids computed per device equal one device's exactly, the bootstrap and partial bootstrap with the
  resamples split over 4 devices too (the same rows are drawn whatever the device count); seed counts the
  devices do not divide use the largest divisor that fits, as documented, and say so."""
  out = _python(PLACEMENT, 4)
  assert out["state_specs"] == [["seeds"]] and out["state_devices"] == [4]
  assert out["rdms_equal"] and out["rsa_equal"] and out["rsa_spec"] == ["seeds"]
  assert out["bootstrap_equal"] and out["partial_equal"]
  assert out["meshes"] == {"1": 1, "2": 2, "3": 3, "4": 4, "5": 1, "6": 3, "8": 4} and out["requested"] == 2
  assert "3 seeds do not divide over 4 devices: using 3" in out["note_3"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _two_processes(data, workdir, *extra) -> list[subprocess.CompletedProcess]:
  port = _free_port()
  procs = []
  for pid in (0, 1):
    cmd = [
      sys.executable,
      str(RUNNER),
      str(data / "data"),
      str(data / "cache"),
      str(workdir),
      f"--coordinator=127.0.0.1:{port}",
      "--num_processes=2",
      f"--process_id={pid}",
      *(extra if pid else ()),
    ]
    procs.append(
      subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(2), cwd=ROOT)
    )
  out = []
  for p in procs:
    stdout, stderr = p.communicate(timeout=600)
    out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
  return out


def test_two_processes_give_one_process_results_write_once_and_resume_after_a_kill(data, tmp_path):
  """Two processes x 2 simulated devices with jax.distributed (gloo): the same results as one process with 2
  devices (same mesh: one seed per device; bit for bit), every file written by process 0 only; then process 1
  is killed (SIGKILL) after its first epoch, which brings process 0 down too; restarting both resumes and gives
  the uninterrupted results exactly."""
  single = tmp_path / "single"
  _run(data, single, 2)
  both = tmp_path / "both"
  p0, p1 = _two_processes(data, both)
  assert p0.returncode == 0 and p1.returncode == 0, (p0.stderr[-2000:], p1.stderr[-2000:])
  w0, w1 = (json.loads(p.stdout.splitlines()[-1]) for p in (p0, p1))
  assert w0["mesh"]["process_count"] == 2 and w0["mesh"]["mesh_shape"] == {"seeds": 2}
  assert w1["written"] == [] and any(w.endswith("alignment.csv") for w in w0["written"])
  for name in ("alignment", "training"):
    assert (single / "results" / f"{name}.csv").read_bytes() == (both / "results" / f"{name}.csv").read_bytes()
  killed = tmp_path / "killed"
  k0, k1 = _two_processes(data, killed, "--kill_after_epoch=1")
  assert k1.returncode != 0 and k0.returncode != 0 and not (killed / "results" / "alignment.csv").exists()
  r0, r1 = _two_processes(data, killed)
  assert r0.returncode == 0 and r1.returncode == 0, (r0.stderr[-2000:], r1.stderr[-2000:])
  for name in ("alignment", "training"):
    assert (killed / "results" / f"{name}.csv").read_bytes() == (both / "results" / f"{name}.csv").read_bytes()


def test_largest_divisor():
  assert [devices.largest_divisor(n, 4) for n in (1, 2, 3, 4, 5, 6, 7, 8, 12)] == [1, 2, 3, 4, 1, 3, 1, 4, 4]


def test_accelerator_check_runs_at_tiny_scale_and_prints_every_line():
  """bench/accelerator.py --scale=tiny runs the same code as the GPU check, in the suite, so it cannot rot."""
  proc = subprocess.run(
    [sys.executable, str(ROOT / "bench" / "accelerator.py"), "--scale=tiny"],
    capture_output=True,
    text=True,
    env=_env(1),
    cwd=ROOT,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
  for name in (
    "device",
    "device_count",
    "bp_step_ms_1seed",
    "bp_step_ms_2seeds",
    "vmap_speedup",
    "epoch_s_scan",
    "epoch_s_python",
    "scan_speedup",
    "step_cost_vs_bp[fa]",
    "step_cost_vs_bp[pc]",
    "step_cost_vs_bp[stdp]",
    "study_seconds",
    "study_train_seconds",
    "study_features_seconds",
    "study_rdms_seconds",
    "study_rsa_seconds",
    "study_bootstrap_seconds",
    "peak_device_memory_gb",
  ):
    assert name in values, (name, proc.stdout)
  assert float(values["vmap_speedup"]) > 0 and float(values["study_seconds"]) > 0
