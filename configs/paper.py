"""The study's settings (P3, arXiv 2605.30556) on the real THINGS-fMRI data.

  python main.py --config=configs/paper.py --workdir=runs/paper \
      --config.brain.betas_dir=/data/things/betas_csv --config.brain.images_dir=/data/things/images \
      --config.data.source=npz --config.data.path=/data/cifar10.npz

5 seeds (42, 123, 456, 789, 1337), 40 epochs, milestones 0, 1, 2, 5, 10, 20, 30, 40; CIFAR-10 subset of
8,000 images at 32 px; features at 32 and 224 px with BN running statistics; Spearman against each subject's
RDM for V1, V2, V3, hV4, LOC, IT on all pairs (P3) and on cross-run pairs (P1 v4).
Expected cost: one GPU, tens of minutes per rule (not yet measured; record it here once it is).
`:tiny` shrinks sizes for tests but keeps the real-data code path (the test points it at fixture files).
"""
from configs import common


def get_config(arg: str = ""):
  c = common.base_config()
  c.name = "paper"
  c.eval.pair_sets = ("all", "cross_run")
  if "tiny" in common.parse_arg(arg):
    common.shrink_for_tests(c)
  return c
