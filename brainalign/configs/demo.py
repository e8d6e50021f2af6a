"""The offline demo (the default of main.py): real Fashion-MNIST images, a SIMULATED brain.

  python main.py                                     # = --config=configs/demo.py --workdir=runs/demo
  python main.py --config=configs/demo.py:tiny --workdir=/tmp/tiny   # seconds; what the tests run

Trains all five conditions (the untrained network, BP, FA, PC, STDP; reference variants) for 3 vmapped
seeds on 4,000 of the 8,000 bundled Fashion-MNIST images (padded to 32 px) for 2 epochs, checkpoints at
epochs 0, 1, 2, extracts features of 720 further Fashion-MNIST images written in the THINGS image layout at
32 and 64 px, and scores them against a simulated THINGS-format fMRI data set (3 subjects, 6 ROIs, known
ground truth; brainalign/data/simulate.py). Every output is labelled data=simulated. Measured cost: see
README.md. The study's schedule (8,000 images, 40 epochs, milestones up to 40; configs/paper.py) costs
about 40x more.
Variants: --config.rule_configs.pc.variant=standard (fa: reference|standard|dfa; pc, stdp: reference|standard).
"""

from brainalign.configs import common


def get_config(arg: str = ""):
  c = common.base_config()
  c.name = "demo"
  c.rules = ("random", "bp", "fa", "pc", "stdp")  # all five conditions, reference variants (the study's)
  c.seeds = (42, 123, 456)
  c.data.source = "fashion_mnist_demo"
  c.data.num_train = 4000  # of the 8,000 bundled: five rules x 3 seeds x 2 epochs in < 10 min
  c.data.num_test = 1000
  c.data.normalization = "train_set"
  c.train.num_epochs = 2
  c.train.milestones = (0, 1, 2)
  common.set_schedule_epochs(c, 2)  # cosine over the demo's epochs (the study: 40)
  c.brain.source = "simulated"
  c.eval.resolutions = (32, 64)
  c.eval.pair_sets = ("all", "cross_run")
  # the report (main.py --mode=report) on 2 CPU cores: 4 sections (2 resolutions x 2 pair sets) x 156 model
  # RDMs; B = 100 resamples and the closed-form partial RSA only keep it to minutes (README.md gives the time).
  # The study: 1,000 resamples (configs/paper.py) and both partial forms.
  c.stats.bootstrap_samples = 100
  c.stats.partial_forms = ("closed",)
  if "tiny" in common.parse_arg(arg):
    common.shrink_for_tests(c)
  return c
