"""Test setup: CPU backend, a persistent XLA compilation cache shared by all tests (and their subprocesses),
the repository root importable (for `configs`)."""

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
for p in (ROOT, ROOT / "tests"):
  if str(p) not in sys.path:
    sys.path.insert(0, str(p))
