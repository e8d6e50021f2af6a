"""The command line (`python main.py ...`, or the `brainalign` command): flags only; every user error ends in one
short block and an exit code, never a traceback.

  brainalign: error: <what, naming the file and the field, what was found and what was expected>
    next: <the one thing to do next>

Exit codes: 0 done; 2 usage and config errors (unknown flag or key, a value of the wrong type or range); 1 data,
cache, checkpoint and workdir errors (brainalign.errors). `--traceback` (or absl's `--verbosity=1`) shows the
traceback of a user error too; a genuine bug always keeps its traceback. `main(argv)` parses its flags into a
fresh FlagValues, so it can be called repeatedly in one process (the tests do).
"""

import difflib
import os
import pathlib
import sys
from typing import TextIO

from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from brainalign import errors, runtime

DEFAULT_CONFIG = str(pathlib.Path(__file__).resolve().parent / "configs" / "demo.py")
MODES = ("run", "prepare", "report")


def _define(fv: flags.FlagValues, argv: list[str]) -> dict:
  """Our flags on `fv`; the config flag reads its --config.KEY overrides from `argv` (not sys.argv)."""
  return {
    "workdir": flags.DEFINE_string(
      "workdir", "runs/demo", "Checkpoints, features, results and figures go here.", flag_values=fv
    ),
    "mode": flags.DEFINE_enum(
      "mode",
      "run",
      list(MODES),
      "run: the whole study; prepare: read the large fMRI files once and cache the brain RDMs "
      "(config.brain.cache_dir/prepared/), so later runs never read them again; report: statistics, tables and "
      "figures of the finished run in --workdir (<workdir>/report/), with the run's own stats settings; "
      "--config.stats.KEY=VALUE overrides one of them.",
      flag_values=fv,
    ),
    "overwrite": flags.DEFINE_bool(
      "overwrite",
      False,
      "If --workdir holds results made with other settings, discard exactly the stale stages "
      "and recompute them (default: stop and list what changed).",
      flag_values=fv,
    ),
    "traceback": flags.DEFINE_bool(
      "traceback", False, "Show the Python traceback of a user error too.", flag_values=fv
    ),
    "distributed": flags.DEFINE_bool(
      "distributed",
      False,
      "Run as one process of several (jax.distributed.initialize): the coordinator address, "
      "process count and id come from the three flags below, or JAX detects them from the cluster environment "
      "(SLURM, Cloud TPU, ...). Every process runs the same command; only process 0 writes files.",
      flag_values=fv,
    ),
    "coordinator_address": flags.DEFINE_string(
      "coordinator_address", None, "host:port of process 0 (implies --distributed).", flag_values=fv
    ),
    "num_processes": flags.DEFINE_integer("num_processes", None, "Number of processes.", flag_values=fv),
    "process_id": flags.DEFINE_integer(
      "process_id", None, "This process's id, 0 .. num_processes - 1.", flag_values=fv
    ),
    "config": config_flags.DEFINE_config_file(
      "config",
      DEFAULT_CONFIG,
      "Experiment config, e.g. configs/demo.py or configs/paper.py:tiny.",
      flag_values=fv,
      lock_config=True,
      sys_argv=argv,
    ),
  }


def _flag_message(e: Exception) -> str:
  """absl/ml_collections flag errors embed tracebacks and escaped newlines; keep the line that says what's wrong."""
  text = str(e).replace("\\n", "\n").strip()
  if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # a repr'd message
    text = text[1:-1]
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if any(line.startswith("Traceback") for line in lines):
    return lines[-1]
  return " ".join(lines) if lines else type(e).__name__


def _missing_key(argv: list[str]) -> errors.ConfigError | None:
  """For a --config.KEY=VALUE whose KEY does not exist: the error naming it, with the closest existing key."""
  base = [argv[0]] + [a for a in argv[1:] if a.startswith("--config=")]
  fv = flags.FlagValues()
  holders = _define(fv, base)
  fv(base, known_only=True)
  config = holders["config"].value
  for arg in argv[1:]:
    if not arg.startswith("--config."):
      continue
    key = arg[len("--config.") :].split("=", 1)[0]
    node, path = config, []
    for part in key.split("."):
      if not hasattr(node, "keys") or part not in node:
        known = list(node.keys()) if hasattr(node, "keys") else []
        close = difflib.get_close_matches(part, known, n=1)
        where = ".".join(["config", *path])
        hint = f"did you mean config.{'.'.join([*path, close[0]])}?" if close else f"keys of {where}: {known}"
        return errors.ConfigError(f"config.{key}: {where} has no key {part!r}", hint=hint)
      node, path = node[part], [*path, part]
  return None


def _parse(argv: list[str]) -> dict:
  """Parses our flags (fresh FlagValues) and absl's own (logging) flags; ConfigError on any flag problem."""
  fv = flags.FlagValues()
  holders = _define(fv, argv)
  try:
    rest = fv(argv, known_only=True)
    config = holders["config"].value
    list(config.keys())  # a config file that failed to load raises only when first used
  except (AttributeError, KeyError) as e:  # a --config.KEY override naming a key that does not exist
    raise _missing_key(argv) or errors.ConfigError(_flag_message(e)) from None
  except OSError as e:  # the config file could not be loaded
    given = next((a.split("=", 1)[1] for a in reversed(argv) if a.startswith("--config=")), DEFAULT_CONFIG)
    missing = "No such file or directory" in str(e)
    raise errors.ConfigError(
      f"--config={given}: " + ("the file does not exist" if missing else _flag_message(e)),
      hint="the shipped configs are configs/demo.py and configs/paper.py (append :tiny etc. for a variant)",
    ) from None
  except (flags.Error, ValueError) as e:
    raise errors.ConfigError(_flag_message(e), hint="see `python main.py --help`") from None
  try:
    unparsed = flags.FLAGS([argv[0]] + rest[1:]) if len(rest) > 1 else flags.FLAGS([argv[0]])
  except flags.Error as e:
    raise errors.ConfigError(_flag_message(e), hint="see `python main.py --help`") from None
  if len(unparsed) > 1:
    raise errors.ConfigError(f"unexpected arguments {unparsed[1:]}", hint="flags take the form --name=value")
  values = {k: h.value for k, h in holders.items() if k != "config"}
  overrides = config_flags.get_override_values(fv["config"])
  return dict(values, config=config, overrides=overrides, config_given=fv["config"].present)


def _report(opts: dict) -> str:
  from brainalign import report  # only the report step needs it

  others = sorted(k for k in opts["overrides"] if not k.startswith("stats."))
  if others:
    raise errors.ConfigError(
      f"--mode=report takes only --config.stats.* overrides, got {others}",
      hint="the run's own settings come from its run_info.json; change them with a new run",
    )
  if opts["config_given"]:
    absl_logging.warning("--mode=report uses the stats settings the run recorded; the --config file is not read")
  report.report(opts["workdir"], {k.removeprefix("stats."): v for k, v in opts["overrides"].items()})
  return f"Report: {os.path.join(opts['workdir'], 'report', 'report.md')}"


def _ours_or_a_warning(record) -> bool:
  return record.levelno >= 30 or (record.name == "absl" and "orbax" not in record.pathname)


def _dispatch(opts: dict) -> str:
  from brainalign import pipeline, probe

  if opts["mode"] == "report":
    return _report(opts)
  absl_logging.debug("Config:\n%s", opts["config"])  # all of it is in run_info.json; shown with --verbosity=1
  if opts["mode"] == "prepare":
    return f"Prepared brain RDMs: {probe.prepare_step(opts['config'])}"
  pipeline.run(opts["config"], opts["workdir"], overwrite=opts["overwrite"])
  return f"Results: {os.path.join(opts['workdir'], 'results')}  Figures: {os.path.join(opts['workdir'], 'figures')}"


def main(argv: list[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
  """Runs one command; returns its exit code (see the module docstring)."""
  argv = list(sys.argv if argv is None else argv)
  stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
  show_traceback = "--traceback" in argv
  try:
    runtime.enable_compilation_cache()
    opts = _parse(argv)
    show_traceback = opts["traceback"] or flags.FLAGS["verbosity"].value >= 1
    if opts["distributed"] or opts["coordinator_address"]:
      from brainalign import devices

      devices.initialize(opts["coordinator_address"], opts["num_processes"], opts["process_id"])
    absl_logging.use_absl_handler()
    if not flags.FLAGS["verbosity"].present:  # progress, timing and estimates are INFO lines: show them
      absl_logging.set_verbosity(absl_logging.INFO)
    # INFO lines are brainalign's own (absl); Orbax's per-checkpoint lines and other libraries' INFO chatter
    # (e.g. jax probing for a TPU) are dropped, their warnings kept.
    absl_logging.get_absl_handler().addFilter(_ours_or_a_warning)
    print(_dispatch(opts), file=stdout)
    return 0
  except errors.UserError as e:
    if show_traceback:
      raise
    print(e.render(), file=stderr)
    return e.exit_code


def entry() -> None:
  """The `brainalign` console script (sets up the process first: brainalign.runtime)."""
  runtime.prepare_process(sys.argv[1:])
  sys.exit(main())
