"""The standard variants end to end: a tiny demo run of fa, pc and stdp (standard) writes every table with
their rows, logs their training accuracy per epoch, and records which variant ran. The reference variants run
in the tiny demo itself (tests/test_pipeline.py)."""

import json

import numpy as np
import pandas as pd

from brainalign import pipeline
from brainalign.configs import demo


def test_fa_pc_stdp_run_through_the_pipeline(tmp_path):
  c = demo.get_config("tiny")
  c.brain.cache_dir = str(tmp_path / "cache")
  c.rules = ("fa", "pc", "stdp")
  c.seeds = (1,)
  c.train.num_epochs, c.train.milestones = 1, (0, 1)
  c.eval.resolutions, c.eval.pair_sets = (32,), ("all",)
  for rule in c.rules:  # the tiny demo (test_pipeline.py) runs the reference variants
    c.rule_configs[rule].variant = "standard"
  pipeline.run(c, str(tmp_path / "run"))
  results = tmp_path / "run" / "results"
  training = pd.read_csv(results / "training.csv")
  alignment = pd.read_csv(results / "alignment.csv")
  for rule in c.rules:
    rows = training[(training.rule == rule) & (training.epoch == 1)]
    assert len(rows) == 1 and rows[["train_accuracy", "test_accuracy"]].notna().all().all(), rule
    assert set(alignment[alignment.rule == rule].epoch) == {0, 1}
    assert np.isfinite(alignment[alignment.rule == rule].rho).all()
  described = json.loads((results / "rules.json").read_text())
  assert all("standard variant" in described[rule] for rule in c.rules)
  assert not any("defective" in described[rule].lower() for rule in c.rules)
  log = json.loads((tmp_path / "run" / "logs" / "pc" / "epoch_0001.json").read_text())
  assert "energy_step10" in log and log["rule_description"] == described["pc"]
