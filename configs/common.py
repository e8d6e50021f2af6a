"""Every config key brainalign reads, with the study's values as defaults; experiments override them.

Keys carry their units (`num_epochs`, `batch_size`, `resolutions` in px). Comments give the reason or the cost.
"""
import ml_collections

# Hyper-parameters of every rule (study.md §4.1). conv_init/conv_bias: the reference implementation used
# different initialisations per rule (study.md §3.2, §6.9).
RULE_CONFIGS = {
    "random": dict(conv_init="torch_default", conv_bias=False),
    "bp": dict(conv_init="torch_default", conv_bias=False, learning_rate=1e-3, weight_decay=1e-4, clip_norm=1.0,
               b1=0.9, b2=0.999, eps=1e-8, schedule="cosine_per_epoch", schedule_epochs=40),
}

STUDY_SEEDS = (42, 123, 456, 789, 1337)
STUDY_MILESTONES = (0, 1, 2, 5, 10, 20, 30, 40)


def parse_arg(arg: str) -> set[str]:
  """'tiny' or 'tiny,foo' -> {'tiny', 'foo'}."""
  return set(filter(None, (arg or "").split(",")))


def base_config() -> ml_collections.ConfigDict:
  """The study's settings (P3): 5 seeds, 40 epochs, milestones 0..40, BN running statistics at extraction."""
  c = ml_collections.ConfigDict()
  c.name = "base"
  c.seeds = STUDY_SEEDS                     # one vmapped training run per seed; key = jax.random.key(seed)
  c.rules = ("random", "bp")                # trained one after another; seeds of a rule train together
  c.save_rdms = False                       # also write model RDM upper triangles (results/rdms/*.npz)

  c.data = ml_collections.ConfigDict(dict(
      source="cifar10_tfds",                # "fashion_mnist_demo" | "npz" | "cifar10_tfds"
      path="",                              # for source="npz"
      num_train=8000,                       # random subset of the training set (P1 v2: shared by all seeds)
      num_test=10000,                       # held-out images for test accuracy
      subset_seed=42,
      normalization="cifar10"))             # "cifar10" constants or "train_set" statistics

  c.model = ml_collections.ConfigDict(dict(
      conv_widths=(32, 64, 128), fc_width=512, num_classes=10, dropout_rate=0.3,
      conv_impl="auto"))                    # "auto": im2col on CPU (faster under vmap), XLA conv elsewhere

  c.rule_configs = ml_collections.ConfigDict({k: dict(v) for k, v in RULE_CONFIGS.items()})

  c.train = ml_collections.ConfigDict(dict(
      num_epochs=40,
      batch_size=128,                       # last partial batch dropped: 62 steps per epoch at 8,000 images
      milestones=STUDY_MILESTONES,          # checkpoints + features + RSA at these epochs (0 = initialised)
      augment_pad=4,                        # random crop after 4-px zero padding
      augment_flip=True,
      epoch_driver="auto"))                 # "python" loop of jitted steps (CPU) | "scan" (GPU/TPU)

  c.brain = ml_collections.ConfigDict(dict(
      source="things_fmri",                 # "things_fmri" (real files) | "simulated" (offline demo)
      betas_dir="",                         # folder with sub-0X_ResponseData.h5 etc. (things_fmri)
      images_dir="",                        # folder with object_images/<concept>/<stimulus> (things_fmri)
      subjects=("sub-01", "sub-02", "sub-03"),
      rois=("V1", "V2", "V3", "hV4", "LOC", "IT"),
      cache_dir="~/.cache/brainalign",      # where the simulated demo data are generated once
      simulation=ml_collections.ConfigDict(dict(   # used when source == "simulated"
          n_stimuli=720, seed=0, n_sessions=2, n_runs=10, n_test_concepts=20,
          roi_sizes=(("V1", 200), ("V2", 180), ("V3", 160), ("hV4", 150), ("lLOC", 100), ("rLOC", 90),
                     ("IT", 250)),
          n_other_voxels=100))))

  c.eval = ml_collections.ConfigDict(dict(
      resolutions=(32, 224),                # px; training is at 32 px (study.md §6.8)
      bn_mode="running",                    # "batch" reproduces the reference PC/STDP defect (study.md §6.1)
      batch_size=128,                       # the reference extraction batch (matters only in "batch" mode)
      rdm_metric="correlation",             # 1 - Pearson (the study); also "cosine", "euclidean"
      pair_sets=("all",)))                  # "all" (P3) and/or "cross_run" (P1 v4)
  return c


def shrink_for_tests(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `:tiny` variant: same code paths, sizes small enough for a 2-core CPU test (about a minute)."""
  c.name += ":tiny"
  c.seeds = (1, 2)
  c.data.num_train = 256
  c.data.num_test = 100
  c.train.num_epochs = 2
  c.train.batch_size = 32
  c.train.milestones = (0, 1, 2)
  c.rule_configs.bp.schedule_epochs = 2
  c.eval.resolutions = (32, 64)
  c.eval.batch_size = 16
  c.brain.simulation.update(dict(
      n_stimuli=40, n_runs=4, n_test_concepts=4,
      roi_sizes=(("V1", 24), ("V2", 20), ("V3", 18), ("hV4", 16), ("lLOC", 10), ("rLOC", 8), ("IT", 30)),
      n_other_voxels=10))
  return c
