"""Configs: every config builds, locks, has a :tiny variant, and names only registered rules and ROIs."""

import pathlib

import pytest

from brainalign import rules
from brainalign.data import things

CONFIGS = sorted(
  p.name
  for p in (pathlib.Path(__file__).resolve().parents[1] / "configs").glob("*.py")
  if p.name not in ("__init__.py", "common.py")
)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("arg", ["", "tiny"])
def test_config_builds_and_names_valid_rules_and_rois(name, arg):
  """Each experiment config (and its tiny variant) resolves every rule and ROI it names."""
  module = __import__(f"configs.{name[:-3]}", fromlist=["get_config"])
  c = module.get_config(arg)
  assert set(c.rules) <= set(rules.names())
  assert set(c.brain.rois) <= set(things.ROI_DEFINITIONS)
  assert all(m <= c.train.num_epochs for m in c.train.milestones)
  for r in c.rules:
    assert r in c.rule_configs
  if arg == "tiny":
    assert c.train.num_epochs <= 2 and len(c.seeds) <= 2


def test_locked_config_rejects_a_misspelled_override():
  """A typo in an override (bn_mod for bn_mode) is an error, not a silently added key."""
  from brainalign.configs import demo

  c = demo.get_config("")
  c.lock()
  with pytest.raises(AttributeError):
    c.eval.bn_mod = "batch"


def test_demo_is_the_default_config_and_paper_uses_the_study_settings():
  """demo: simulated brain, 32/64 px; paper: 5 study seeds, 40 epochs, P3 milestones, 32/224 px, real data."""
  from brainalign.configs import demo, paper

  d, p = demo.get_config(), paper.get_config()
  assert d.brain.source == "simulated" and tuple(d.eval.resolutions) == (32, 64)
  assert tuple(p.seeds) == (42, 123, 456, 789, 1337) and p.train.num_epochs == 40
  assert tuple(p.train.milestones) == (0, 1, 2, 5, 10, 20, 30, 40)
  assert tuple(p.eval.resolutions) == (32, 224) and p.brain.source == "things_fmri"
  assert p.eval.bn_mode == "running"
