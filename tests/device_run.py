"""A tiny run in its own process, for the device tests (tests/test_devices.py): the RDM data set of
tests/rdm_fixture.py, with simulated CPU devices (XLA_FLAGS, set by the caller) and optionally as one process of
several (jax.distributed). Prints one JSON line: the files this process wrote, and the run's mesh.

  python tests/device_run.py DATA_ROOT CACHE WORKDIR [--rules=bp] [--seeds=1,2] [--coordinator=127.0.0.1:PORT
                             --num_processes=2 --process_id=0] [--kill_after_epoch=1]
"""

import argparse
import json
import os
import pathlib
import signal
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("data_root")
  ap.add_argument("cache")
  ap.add_argument("workdir")
  ap.add_argument("--rules", default="bp")
  ap.add_argument("--seeds", default="1,2")
  ap.add_argument("--coordinator")
  ap.add_argument("--num_processes", type=int)
  ap.add_argument("--process_id", type=int)
  ap.add_argument("--kill_after_epoch", type=int)
  args = ap.parse_args()
  from brainalign import devices

  if args.coordinator:
    devices.initialize(args.coordinator, args.num_processes, args.process_id, heartbeat_timeout_seconds=10)
  import rdm_fixture

  from brainalign import io, pipeline

  written = []  # every file brainalign writes goes through io.atomic_path (Orbax's checkpoints aside)
  atomic_path = io.atomic_path

  def recording(path):
    written.append(str(path))
    return atomic_path(path)

  io.atomic_path = recording
  config = rdm_fixture.config(
    rdm_fixture.locate(pathlib.Path(args.data_root)), pathlib.Path(args.cache), rules=tuple(args.rules.split(","))
  )
  config.seeds = tuple(int(s) for s in args.seeds.split(","))

  def on_epoch(rule, epoch):
    if args.kill_after_epoch is not None and epoch == args.kill_after_epoch:
      os.kill(os.getpid(), signal.SIGKILL)

  pipeline.run(config, args.workdir, on_epoch=on_epoch)
  info = json.loads((pathlib.Path(args.workdir) / "run_info.json").read_text())
  print(json.dumps({"written": written, "mesh": info["mesh"]}))


if __name__ == "__main__":
  main()
