"""brainalign.runtime: when the command re-executes itself with huge pages for malloc, and where compiled
programs are cached."""

import os
import pathlib
import subprocess
import sys

import pytest

from brainalign import errors, runtime


def test_malloc_env_extends_tunables_once_and_respects_the_switch(monkeypatch):
  monkeypatch.setattr(runtime, "_glibc_supports_hugetlb", lambda: True)
  monkeypatch.setattr(runtime, "_huge_pages_available", lambda: True)
  monkeypatch.setattr(sys, "platform", "linux")
  assert runtime.malloc_env({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
  kept = runtime.malloc_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "X": "1"})
  assert kept["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1" and kept["X"] == "1"
  assert runtime.malloc_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}) is None  # the user's own choice
  assert runtime.malloc_env({"BRAINALIGN_MALLOC_HUGETLB": "0"}) is None
  monkeypatch.setattr(runtime, "_huge_pages_available", lambda: False)
  assert runtime.malloc_env({}) is None


@pytest.mark.skipif(runtime.malloc_env({}) is None, reason="no glibc >= 2.35 with transparent huge pages here")
def test_reexec_sets_the_tunable_and_keeps_the_command():
  code = (
    "from brainalign import runtime; runtime.reexec_with_huge_pages(); "
    "import os, sys; print(os.environ['GLIBC_TUNABLES'], sys.argv[1:])"
  )
  env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "BRAINALIGN_MALLOC_HUGETLB")}
  out = subprocess.run([sys.executable, "-c", code, "a", "--b=1"], env=env, capture_output=True, text=True, check=True)
  assert out.stdout.split() == ["glibc.malloc.hugetlb=1", "['a',", "'--b=1']"]


def test_cache_dir_rules(tmp_path):
  assert runtime.cache_dir({"JAX_COMPILATION_CACHE_DIR": "/x"}) is None  # jax's own setting wins
  assert runtime.cache_dir({"BRAINALIGN_XLA_CACHE": "off"}) is None
  assert runtime.cache_dir({"BRAINALIGN_XLA_CACHE": str(tmp_path)}) == tmp_path
  assert runtime.cache_dir({}) == pathlib.Path("~/.cache/brainalign/xla").expanduser()


def test_cache_size_limit_in_gib_and_a_bad_value_names_the_variable():
  assert runtime.cache_max_bytes({}) == 2 * 2**30
  assert runtime.cache_max_bytes({"BRAINALIGN_XLA_CACHE_GB": "0.5"}) == 2**29
  for bad in ("lots", "0", "-1", "nan"):
    with pytest.raises(errors.ConfigError, match="BRAINALIGN_XLA_CACHE_GB"):
      runtime.cache_max_bytes({"BRAINALIGN_XLA_CACHE_GB": bad})


def test_report_gets_one_host_device_per_core(monkeypatch):
  monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
  assert runtime.report_xla_flags(["--mode=report", "--workdir=w"], {}) == "--xla_force_host_platform_device_count=2"
  assert runtime.report_xla_flags(["--mode", "report"], {"XLA_FLAGS": "--a"}) == (
    "--a --xla_force_host_platform_device_count=2"
  )
  assert runtime.report_xla_flags(["--workdir=w"], {}) is None  # training: untouched
  assert runtime.report_xla_flags(["--mode=report"], {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}) is None
  monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda _: {0}, raising=False)
  assert runtime.report_xla_flags(["--mode=report"], {}) is None
