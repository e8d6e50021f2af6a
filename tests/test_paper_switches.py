"""configs/paper.py switch sets for the P1 v2 and P1 v4 conventions (docs/methods.md §2.1, §9.2, §9.3)."""

import pytest

from brainalign.configs import paper


def test_p1v2_and_p1v4_switch_sets():
  """p1v2: 224 px, all pairs, the four P1 ROIs, epoch-40 scoring, extraction batch 64, shared subset seed 42;
  p1v4: the same but cross-run pairs first (and all pairs), running BN; both combine with tiny; unknown or
  conflicting arguments are errors."""
  v2, v4 = paper.get_config("p1v2"), paper.get_config("p1v4")
  for c in (v2, v4):
    assert tuple(c.brain.rois) == ("V1", "V2", "LOC", "IT") and tuple(c.eval.resolutions) == (224,)
    assert tuple(c.train.milestones) == (0, 40) and c.train.num_epochs == 40
    assert tuple(c.seeds) == (42, 123, 456, 789, 1337) and c.eval.bn_mode == "running"
    assert set(c.rules) <= {"random", "bp", "fa", "pc", "stdp"} and {"random", "bp"} <= set(c.rules)
  assert tuple(v2.eval.pair_sets) == ("all",) and v2.eval.batch_size == 64 and v2.data.subset_seed == 42
  assert tuple(v4.eval.pair_sets) == ("cross_run", "all")
  tiny = paper.get_config("p1v4,tiny")
  assert tiny.train.num_epochs <= 2 and tuple(tiny.eval.pair_sets) == ("cross_run", "all")
  with pytest.raises(ValueError, match="unknown argument"):
    paper.get_config("p1v3")
  with pytest.raises(ValueError, match="choose one"):
    paper.get_config("p1v2,p1v4")
