"""The offline demo (the default of main.py): real Fashion-MNIST images, a SIMULATED brain.

  python main.py                                     # = --config=configs/demo.py --workdir=runs/demo
  python main.py --config=configs/demo.py:tiny --workdir=/tmp/tiny   # seconds; what the tests run

Trains the untrained baseline and BP for 3 seeds on 8,000 bundled Fashion-MNIST images (padded to 32 px)
for 5 epochs, checkpoints at epochs 0, 1, 2, 5, extracts features of 720 further Fashion-MNIST images
written in the THINGS image layout at 32 and 64 px, and scores them against a simulated THINGS-format
fMRI data set (3 subjects, 6 ROIs, known ground truth; brainalign/data/simulate.py). Every output is
labelled data=simulated. Measured cost: see README.md (about 6 minutes on a 2-core CPU).

All five conditions would take well over 10 minutes here (a 1-seed, 2-epoch run of all five took 8 minutes on
a 2-core CPU), so they are opt-in:
  python main.py --config.rules='("random","bp","fa","pc","stdp")'
Variants: --config.rule_configs.pc.variant=standard (fa: reference|standard|dfa; pc, stdp: reference|standard).
"""
from configs import common


def get_config(arg: str = ""):
  c = common.base_config()
  c.name = "demo"
  c.seeds = (42, 123, 456)
  c.data.source = "fashion_mnist_demo"
  c.data.num_test = 1000
  c.data.normalization = "train_set"
  c.train.num_epochs = 5
  c.train.milestones = (0, 1, 2, 5)
  c.rule_configs.bp.schedule_epochs = 5     # cosine over the demo's 5 epochs (the study: 40)
  c.rule_configs.fa.schedule_epochs = 5
  c.rule_configs.pc.standard.schedule_epochs = 5
  c.brain.source = "simulated"
  c.eval.resolutions = (32, 64)
  c.eval.pair_sets = ("all", "cross_run")
  if "tiny" in common.parse_arg(arg):
    common.shrink_for_tests(c)
  return c
