"""Test setup: CPU backend, a persistent XLA compilation cache shared by all tests (and their subprocesses),
the repository root importable (for `configs`), and the size of `pytest -n auto`'s worker pool."""

import os
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Many tests compile the same programs (the tiny CNN's step, the extractor, the RSA grid): caching compiled
# executables on disk turns every recompilation after the first into a load. It changes no number.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(ROOT / ".cache" / "jax-tests"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# A size limit turns on jax's file lock around cache reads and writes: parallel workers (pytest -n) never read
# an entry another worker is still writing.
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(8 * 2**30))
for p in (ROOT, ROOT / "tests"):
  if str(p) not in sys.path:
    sys.path.insert(0, str(p))


# One worker needs up to ~3 GiB (a tiny training run with its compiled programs); more than 4 workers gain little
# because the slowest test files take minutes each (`pytest -n auto --dist loadfile` keeps a file on one worker).
_GIB_PER_WORKER, _MAX_WORKERS = 3, 4


def pytest_xdist_auto_num_workers(config):
  """`-n auto`: one worker per core, at most _MAX_WORKERS and as many as the memory holds at _GIB_PER_WORKER."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  try:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
  except (ValueError, OSError, AttributeError):
    memory_gib = _GIB_PER_WORKER * _MAX_WORKERS
  return max(1, min(cores, _MAX_WORKERS, int(memory_gib // _GIB_PER_WORKER)))
