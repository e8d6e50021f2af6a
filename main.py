"""brainalign entry point. Kept short on purpose: everything testable lives in the library.

python main.py                                            # the offline demo (simulated brain)
python main.py --config=configs/demo.py:tiny --workdir=/tmp/tiny
python main.py --config=configs/paper.py --workdir=runs/paper --config.brain.betas_dir=... (see README)
python main.py --mode=prepare --config=configs/paper.py --config.brain.betas_dir=...   # cache brain RDMs once
python main.py --mode=report --workdir=/tmp/tiny --config=configs/demo.py:tiny   # statistics + report of a run
"""

import os
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # configs/ imports `configs.common`

from brainalign import pipeline, probe

_DEFAULT_CONFIG = str(pathlib.Path(__file__).resolve().parent / "configs" / "demo.py")
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Checkpoints, features, results and figures go here.")
_MODE = flags.DEFINE_enum(
  "mode",
  "run",
  ["run", "prepare", "report"],
  "run: the whole study; prepare: read the large fMRI files once and cache the brain RDMs "
  "(config.brain.cache_dir/prepared/), so later runs never read them again; report: "
  "statistics, tables and figures of the finished run in --workdir (<workdir>/report/), "
  "with the settings of --config's stats block.",
)
_CONFIG = config_flags.DEFINE_config_file(
  "config", _DEFAULT_CONFIG, "Experiment config, e.g. configs/demo.py or configs/paper.py:tiny.", lock_config=True
)


def main(argv):
  # Orbax logs every checkpoint step at INFO; keep brainalign's own progress readable.
  logging.get_absl_handler().addFilter(lambda record: "orbax" not in record.pathname)
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.info("Config:\n%s", _CONFIG.value)
  if _MODE.value == "prepare":
    print(f"Prepared brain RDMs: {probe.prepare_step(_CONFIG.value)}")
    return
  if _MODE.value == "report":
    from brainalign import report  # only the report step needs it

    report.report(_WORKDIR.value, _CONFIG.value.stats)
    print(f"Report: {os.path.join(_WORKDIR.value, 'report', 'report.md')}")
    return
  pipeline.run(_CONFIG.value, _WORKDIR.value)
  print(f"Results: {os.path.join(_WORKDIR.value, 'results')}  Figures: {os.path.join(_WORKDIR.value, 'figures')}")


if __name__ == "__main__":
  app.run(main)
