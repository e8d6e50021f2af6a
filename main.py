"""brainalign entry point. Kept short on purpose: everything testable lives in the library.

python main.py                                            # the offline demo (simulated brain)
python main.py --config=configs/demo.py:tiny --workdir=/tmp/tiny
python main.py --config=configs/paper.py --workdir=runs/paper --config.brain.betas_dir=... (see README)
python main.py --mode=prepare --config=configs/paper.py --config.brain.betas_dir=...   # cache brain RDMs once
python main.py --mode=report --workdir=/tmp/tiny                 # statistics + report of a finished run
python main.py --mode=report --workdir=/tmp/tiny --config.stats.bootstrap_samples=200   # one setting changed
"""

import os
import pathlib
import sys

from absl import app, flags, logging
from ml_collections import config_flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # configs/ imports `configs.common`

from brainalign import errors, pipeline, probe

_DEFAULT_CONFIG = str(pathlib.Path(__file__).resolve().parent / "configs" / "demo.py")
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Checkpoints, features, results and figures go here.")
_MODE = flags.DEFINE_enum(
  "mode",
  "run",
  ["run", "prepare", "report"],
  "run: the whole study; prepare: read the large fMRI files once and cache the brain RDMs "
  "(config.brain.cache_dir/prepared/), so later runs never read them again; report: "
  "statistics, tables and figures of the finished run in --workdir (<workdir>/report/), with the run's own "
  "stats settings; --config.stats.KEY=VALUE overrides one of them.",
)
_OVERWRITE = flags.DEFINE_bool(
  "overwrite",
  False,
  "If --workdir holds results made with other settings, discard exactly the stale stages and recompute them "
  "(default: stop and list what changed).",
)
_TRACEBACK = flags.DEFINE_bool("traceback", False, "Show the Python traceback of a user error too.")
_CONFIG = config_flags.DEFINE_config_file(
  "config", _DEFAULT_CONFIG, "Experiment config, e.g. configs/demo.py or configs/paper.py:tiny.", lock_config=True
)


def _report() -> str:
  from brainalign import report  # only the report step needs it

  overrides = config_flags.get_override_values(flags.FLAGS["config"])
  others = sorted(k for k in overrides if not k.startswith("stats."))
  if others:
    raise errors.ConfigError(
      f"--mode=report takes only --config.stats.* overrides, got {others}",
      hint="the run's own settings come from its run_info.json; change them with a new run",
    )
  if flags.FLAGS["config"].present:
    logging.warning("--mode=report uses the stats settings the run recorded; the --config file is not read")
  report.report(_WORKDIR.value, {k.removeprefix("stats."): v for k, v in overrides.items()})
  return f"Report: {os.path.join(_WORKDIR.value, 'report', 'report.md')}"


def _main(argv) -> str:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _MODE.value == "report":
    return _report()
  logging.info("Config:\n%s", _CONFIG.value)
  if _MODE.value == "prepare":
    return f"Prepared brain RDMs: {probe.prepare_step(_CONFIG.value)}"
  pipeline.run(_CONFIG.value, _WORKDIR.value, overwrite=_OVERWRITE.value)
  return f"Results: {os.path.join(_WORKDIR.value, 'results')}  Figures: {os.path.join(_WORKDIR.value, 'figures')}"


def main(argv):
  # Orbax logs every checkpoint step at INFO; keep brainalign's own progress readable.
  logging.get_absl_handler().addFilter(lambda record: "orbax" not in record.pathname)
  try:
    print(_main(argv))
  except errors.UserError as e:
    if _TRACEBACK.value:
      raise
    print(e.render(), file=sys.stderr)
    sys.exit(e.exit_code)


if __name__ == "__main__":
  app.run(main)
