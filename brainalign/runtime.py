"""Process set-up of the command line (`brainalign`, `python main.py`): what makes a run faster without
changing a single number, applied before any work so a user never has to think about it.

* Huge pages for malloc (Linux, glibc >= 2.35, transparent huge pages not disabled). XLA:CPU allocates its
  temporary buffers afresh on every call of a compiled step (~176 MB per seed for the study's network); with
  4 KiB pages each call takes ~45,000 page faults, with `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` a few hundred
  (bench/README.md). glibc reads the tunable only when a process starts, so the command re-executes itself
  once with it set. `BRAINALIGN_MALLOC_HUGETLB=0` turns this off; a `GLIBC_TUNABLES` that already names the
  tunable is left as it is.
* For `--mode=report` on a CPU, one XLA host device per core (`--xla_force_host_platform_device_count`, added to
  `XLA_FLAGS` unless it is already there): the report's bootstraps split their resamples over all devices
  (brainalign.stats, `mesh=`), so every core evaluates its own resamples; the numbers are the same on any
  device count. Training is untouched (it never gets more than one CPU device this way).
* The persistent XLA compilation cache, in `$BRAINALIGN_XLA_CACHE` or `~/.cache/brainalign/xla` (`off`
  disables it; `JAX_COMPILATION_CACHE_DIR` set by the user wins): a second run, and every rule whose program
  equals an earlier rule's (e.g. the feature extractor), loads the compiled program instead of compiling it.
  Compiled programs are keyed by their HLO, jax version and device, so a cache entry never changes a result.
  It is limited to `$BRAINALIGN_XLA_CACHE_GB` GiB (default 2; least recently used programs are evicted).
"""

import os
import pathlib
import sys

_TUNABLE = "glibc.malloc.hugetlb=1"


def _glibc_supports_hugetlb() -> bool:
  try:
    name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
    major, minor = (int(x) for x in version.split(".")[:2])
  except (ValueError, OSError, AttributeError):
    return False  # not glibc (musl, macOS, Windows)
  return name == "glibc" and (major, minor) >= (2, 35)


def _huge_pages_available() -> bool:
  try:
    return "[never]" not in pathlib.Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
  except OSError:
    return False


def malloc_env(environ: dict | None = None) -> dict | None:
  """The environment to re-execute with (GLIBC_TUNABLES extended by the huge-page tunable), or None when
  nothing is to be done: already set, turned off, or not supported by this system."""
  environ = dict(os.environ if environ is None else environ)
  tunables = environ.get("GLIBC_TUNABLES", "")
  if environ.get("BRAINALIGN_MALLOC_HUGETLB", "1") == "0" or "glibc.malloc.hugetlb" in tunables:
    return None
  if not sys.platform.startswith("linux") or not _glibc_supports_hugetlb() or not _huge_pages_available():
    return None
  environ["GLIBC_TUNABLES"] = ":".join(filter(None, [tunables, _TUNABLE]))
  return environ


def _is_report(argv: list[str]) -> bool:
  return "--mode=report" in argv or any(a == "--mode" and b == "report" for a, b in zip(argv, argv[1:]))


def report_xla_flags(argv: list[str], environ: dict | None = None) -> str | None:
  """XLA_FLAGS with one host device per usable core for a `--mode=report` command, or None (another mode, one
  core, or the user's XLA_FLAGS already set the device count)."""
  environ = os.environ if environ is None else environ
  flags = environ.get("XLA_FLAGS", "")
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  if not _is_report(argv) or cores < 2 or "xla_force_host_platform_device_count" in flags:
    return None
  return " ".join(filter(None, [flags, f"--xla_force_host_platform_device_count={cores}"]))


def prepare_process(argv: list[str]) -> None:
  """Before any work of a command (argv = its arguments): the report's host devices, then huge pages for
  malloc, which re-executes the process once (see the module docstring)."""
  flags = report_xla_flags(argv)
  if flags is not None and "jax" not in sys.modules:
    os.environ["XLA_FLAGS"] = flags
  reexec_with_huge_pages()


def reexec_with_huge_pages() -> None:
  """Replaces this process by the same command with huge pages for malloc (see the module docstring); returns
  without doing anything where that is not possible or already done."""
  env = malloc_env()
  if env is None:
    return
  argv = [sys.executable, *sys.orig_argv[1:]]
  sys.stdout.flush()
  sys.stderr.flush()
  try:
    os.execve(sys.executable, argv, env)
  except OSError:
    return  # could not re-execute: run on with the default allocator


def cache_dir(environ: dict | None = None) -> pathlib.Path | None:
  """Where compiled programs are kept, or None (disabled, or the user configured jax's own setting)."""
  environ = os.environ if environ is None else environ
  if environ.get("JAX_COMPILATION_CACHE_DIR"):
    return None
  where = environ.get("BRAINALIGN_XLA_CACHE", "")
  if where.lower() == "off":
    return None
  return pathlib.Path(where).expanduser() if where else pathlib.Path("~/.cache/brainalign/xla").expanduser()


def enable_compilation_cache() -> pathlib.Path | None:
  """Turns on jax's persistent compilation cache (see `cache_dir`); returns the directory used, or None."""
  path = cache_dir()
  if path is None:
    return None
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError:
    return None  # an unwritable home: compile as usual
  import jax

  jax.config.update("jax_compilation_cache_dir", str(path))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  # A size limit turns on jax's least-recently-used eviction and its file lock (filelock), so the cache
  # never grows without bound and concurrent runs never read a half-written entry.
  jax.config.update("jax_compilation_cache_max_size", cache_max_bytes())
  return path


def cache_max_bytes(environ: dict | None = None) -> int:
  """The compilation cache's size limit: `$BRAINALIGN_XLA_CACHE_GB` GiB (default 2), least recently used
  programs evicted first."""
  environ = os.environ if environ is None else environ
  raw = environ.get("BRAINALIGN_XLA_CACHE_GB", "") or "2"
  try:
    gib = float(raw)
  except ValueError:
    gib = float("nan")
  if not gib > 0:
    from brainalign import errors

    raise errors.ConfigError(
      f"environment variable BRAINALIGN_XLA_CACHE_GB: expected a positive number of GiB, got {raw!r}",
      hint="unset it for the default of 2 GiB, or set BRAINALIGN_XLA_CACHE=off to disable the cache",
    )
  return int(gib * 2**30)
