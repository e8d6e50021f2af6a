"""Every config key brainalign reads, with the study's values as defaults; experiments override them.

Keys carry their units (`num_epochs`, `batch_size`, `resolutions` in px). Comments give the reason or the cost.
"""

import ml_collections

# Hyper-parameters of every rule (docs/methods.md §4.1). conv_init/conv_bias: the reference implementation used
# different initialisations per rule (docs/methods.md §3.2, §6.9).
RULE_CONFIGS = {
  "random": dict(conv_init="torch_default", conv_bias=False, pre_bn_relu=False),
  "bp": dict(
    conv_init="torch_default",
    conv_bias=False,
    pre_bn_relu=False,
    learning_rate=1e-3,
    weight_decay=1e-4,
    clip_norm=1.0,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    schedule="cosine_per_epoch",
    schedule_epochs=40,
  ),
  # Feedback alignment (brainalign/rules/feedback_alignment.py); the variant picks one optimiser block.
  # reference: B only conv->conv (the study's FA/BP hybrid, docs/methods.md §4.2b, §6.4), the study's SGD 5e-4.
  # standard: B at every layer incl. FC (Lillicrap et al. 2016); dfa: direct FA (Nøkland 2016). With random
  # feedback at the FC layers SGD 5e-4 is still at chance after 2 demo epochs; 1e-2 learns (README). dfa: no
  # global-norm clip (its broadcast output-error signals dominate the norm, so clipping starved FC2's exact
  # gradient and the network stayed at chance; unclipped, 0.45 test accuracy after 2 demo epochs).
  # diagnostics: per-layer angles FA-update vs BP-gradient and W vs B (one extra backward, last step of each epoch).
  "fa": dict(
    variant="reference",
    conv_init="kaiming_normal",
    conv_bias=True,
    pre_bn_relu=False,
    diagnostics=True,
    reference=dict(
      learning_rate=5e-4,
      momentum=0.9,
      weight_decay=1e-4,
      clip_norm=1.0,
      schedule="cosine_per_epoch",
      schedule_epochs=40,
    ),
    standard=dict(
      learning_rate=1e-2,
      momentum=0.9,
      weight_decay=1e-4,
      clip_norm=1.0,
      schedule="cosine_per_epoch",
      schedule_epochs=40,
    ),
    dfa=dict(
      learning_rate=1e-2,
      momentum=0.9,
      weight_decay=1e-4,
      clip_norm=0.0,
      schedule="cosine_per_epoch",
      schedule_epochs=40,
    ),
  ),
  # Predictive coding (brainalign/rules/predictive_coding.py); the variant picks one of the two blocks.
  # reference: docs/methods.md §4.3(b), defects §6.3; prediction_bias: PyTorch's ConvTranspose2d default (unconfirmed).
  # standard: Whittington & Bogacz 2017 / PCX energy; output_weight β < 1 = weaker clamping (β -> 0: BP).
  # diagnostics: cosine of each layer's update with the BP gradient (one extra backward, last step of each epoch).
  "pc": dict(
    variant="reference",
    conv_init="torch_default",
    conv_bias=False,
    pre_bn_relu=False,
    diagnostics=True,
    reference=dict(
      inference_steps=10,
      inference_rate=0.02,
      local_learning_rate=1e-4,
      error_clip=0.5,
      update_clip=0.01,
      readout_learning_rate=1e-3,
      prediction_bias=True,
    ),
    standard=dict(
      inference_steps=10,
      inference_rate=0.1,
      output_weight=1.0,
      learning_rate=1e-3,
      weight_decay=1e-4,
      clip_norm=1.0,
      b1=0.9,
      b2=0.999,
      eps=1e-8,
      schedule="cosine_per_epoch",
      schedule_epochs=40,
    ),
  ),
  # STDP (brainalign/rules/stdp.py); conv -> ReLU -> BN -> ReLU -> pool (pre_bn_relu, docs/methods.md §3.1).
  # reference: docs/methods.md §4.4(b), a defective rule (§6.2); standard: pair-based trace STDP at every position.
  # Both: FC1, FC2, BN affine by Adam(readout_learning_rate); kernels clipped to [w_min, w_max] after each step.
  "stdp": dict(
    variant="reference",
    conv_init="kaiming_normal",
    conv_bias=False,
    pre_bn_relu=True,
    reference=dict(
      learning_rate=5e-4,
      a_plus=0.003,
      a_minus=0.003,
      tau_plus=20.0,
      tau_minus=20.0,
      time_steps=10,
      delta_clip=0.002,
      w_min=-1.0,
      w_max=1.0,
      readout_learning_rate=1e-3,
    ),
    standard=dict(
      learning_rate=1.0,
      a_plus=0.004,
      a_minus=0.003,
      tau=20.0,  # tau in time steps
      time_steps=10,
      max_rate=0.3,
      threshold=0.5,
      k_wta=0,  # k_wta 0 = off
      batch_size=16,  # images of each batch that drive STDP (cost ∝ this x time_steps)
      w_min=-1.0,
      w_max=1.0,
      readout_learning_rate=1e-3,
    ),
  ),
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
  c.seeds = STUDY_SEEDS  # one vmapped training run per seed; key = jax.random.key(seed)
  c.rules = ("random", "bp")  # trained one after another; seeds of a rule train together
  # device mesh (brainalign/devices.py): devices on the `seeds` axis, 0 = all devices of all processes; when they
  # do not divide the seed count, the largest divisor of it that fits (the log and run_info.json say which).
  # Not part of any fingerprint: the device count changes no result beyond float rounding.
  c.mesh = ml_collections.ConfigDict(dict(seeds=0))

  c.data = ml_collections.ConfigDict(
    dict(
      source="cifar10_tfds",  # "fashion_mnist_demo" | "npz" | "cifar10_tfds"
      path="",  # for source="npz"
      # source="cifar10_tfds": tfds' cifar10 (array_record), written there from the CIFAR-10 archive by
      # `python -m brainalign.data.cifar10` (docs/cifar10.md); read without TensorFlow (the `paper` extra),
      # never downloaded; indices in the original CIFAR-10 order
      tfds_data_dir="~/tensorflow_datasets",
      num_train=8000,  # random subset of the training set, per seed (see subset)
      # "per_seed" (default; P3's script): seed s trains on its own subset, numpy default_rng(s);
      # "shared" (P1's v8 notebook, configs/paper.py:p1v2/p1v4): one subset drawn with subset_seed for all seeds
      subset="per_seed",
      num_test=10000,  # held-out images for test accuracy (shared by all seeds)
      subset_seed=42,  # the shared subset and the test subset
      normalization="cifar10",
    )
  )  # "cifar10" constants or "train_set" statistics

  c.model = ml_collections.ConfigDict(
    dict(conv_widths=(32, 64, 128), fc_width=512, num_classes=10, dropout_rate=0.3, conv_impl="auto")
  )  # "auto": im2col on CPU (faster under vmap), XLA conv elsewhere

  c.rule_configs = ml_collections.ConfigDict({k: dict(v) for k, v in RULE_CONFIGS.items()})

  c.train = ml_collections.ConfigDict(
    dict(
      num_epochs=40,
      batch_size=128,  # last partial batch dropped: 62 steps per epoch at 8,000 images
      milestones=STUDY_MILESTONES,  # checkpoints + features + RSA at these epochs (0 = initialised)
      augment_pad=4,  # random crop after 4-px zero padding
      augment_flip=True,
      epoch_driver="auto",
    )
  )  # auto: "turn" (seeds one after another, CPU, one device) | "python" (vmapped seeds, CPU) | "scan" (GPU/TPU)

  c.brain = ml_collections.ConfigDict(
    dict(
      source="things_fmri",  # "things_fmri" (real files) | "simulated" (offline demo) | "rdms"
      betas_dir="",  # folder with sub-0X_ResponseData.h5 etc. (things_fmri)
      images_dir="",  # folder with object_images/<concept>/<stimulus> (things_fmri)
      subjects=("sub-01", "sub-02", "sub-03"),  # source="rdms": () = all subjects in the file
      rois=("V1", "V2", "V3", "hV4", "LOC", "IT"),
      # ROI name -> VoxelMetadata mask columns whose union it is (docs/data-formats.md §6.2); add more in a config
      roi_definitions=ml_collections.ConfigDict(
        dict(V1=("V1",), V2=("V2",), V3=("V3",), hV4=("hV4",), LOC=("lLOC", "rLOC"), IT=("IT",))
      ),
      selection="first_exemplar",  # the study's 720 | "concept_mean" (12 exemplars averaged) | "test_mean"
      zscore="all",  # per voxel across all trials (the study) | "run" | "session"
      voxel_selection="mask",  # ROI mask only (the study) | "reliability": also nc_testset > min
      nc_testset_min=30.0,  # percent; Brain-Score's threshold (voxel_selection="reliability")
      prepared="auto",  # brain RDM cache (main.py --mode=prepare): "auto" | "require" | "off"
      # how a prepared cache is checked against its source files: "stat" (size + modification time; a file edited
      # with its mtime restored is not detected) | "content" (also the SHA-256 of every file: ~1.5 min for 43 GB)
      cache_check="stat",
      rdms_path="",  # source="rdms": .npz | .mat (92-image format) | rsatoolbox .hdf5/.pkl
      stimuli_file="",  # source="rdms": stimulus file names in RDM row order, one per line
      rdms_sessions="average",  # source="rdms", .mat: "average" sessions per subject | "separate"
      image_layout="",  # "" = "things" (object_images/<concept>/<file>), "flat" for rdms
      name="",  # the data's own name in titles and the report; "" = "THINGS-fMRI", the RDM file's name, or SIMULATED
      cache_dir="~/.cache/brainalign",  # simulated demo data and prepared brain RDMs (prepared/brain-*.npz)
      simulation=ml_collections.ConfigDict(
        dict(  # used when source == "simulated"
          n_stimuli=720,
          seed=0,
          n_sessions=2,
          n_runs=10,
          n_test_concepts=20,
          roi_sizes=(("V1", 200), ("V2", 180), ("V3", 160), ("hV4", 150), ("lLOC", 100), ("rLOC", 90), ("IT", 250)),
          n_other_voxels=100,
        )
      ),
    )
  )

  c.eval = ml_collections.ConfigDict(
    dict(
      resolutions=(32, 224),  # px; training is at 32 px (docs/methods.md §6.8)
      bn_mode="running",  # "batch" reproduces the reference PC/STDP defect (docs/methods.md §6.1)
      batch_size=128,  # the reference extraction batch (matters only in "batch" mode)
      rdm_metric="correlation",  # 1 - Pearson (the study); also "cosine", "euclidean"
      pair_sets=("all",),  # "all" (P3) and/or "cross_run" (P1 v4)
      # brain.selection="concept_mean" only: model features of a concept = "mean" over the same exemplar images
      # whose responses are averaged (default) | "first_exemplar" (the concept's first image only)
      concept_features="mean",
    )
  )

  # Statistics of the report (main.py --mode=report; brainalign/stats.py, brainalign/report.py; docs/methods.md §8)
  c.stats = ml_collections.ConfigDict(
    dict(
      bootstrap_samples=1000,  # B stimulus resamples, shared by every condition (P1 v4: 1,000)
      bootstrap_seed=20261002,  # jax.random.key(seed) draws the [B, n] resample indices (P1 v4)
      batch_size=1,  # resamples per lax.map step (memory ~ batch x conditions x pairs)
      model_chunk=32,  # model RDMs ranked together inside a resample
      ci=0.95,  # percentile interval
      comparator="spearman",  # "spearman" | "rho-a" | "corr" | "cosine" | "tau-a" (rsatoolbox names;
      # tau-a ~0.3 s per 258,840-pair comparison on CPU: small grids only)
      alpha=0.05,  # significance level after correction
      # BH/Holm family (brainalign/report.py FAMILIES), tests at every milestone: "rule_roi_per_milestone" =
      # all rule pairs (Δρ: all rules) x ROIs at one milestone; "rule_roi_all_milestones" = one family over
      # every milestone; "rule_per_roi_milestone" = one family per milestone x ROI
      family="rule_roi_per_milestone",
      reference_rule="random",  # main-table mark: difference from this rule significant
      resolution=0,  # px of the report; 0 = the highest evaluated resolution
      pairs="auto",  # pair set; "auto" = "cross_run" if evaluated, else "all"
      rdm_epoch=-1,  # checkpoint of the RDM heatmaps; -1 = last milestone
      # partial RSA forms, bootstrapped; the first is shown in report.md: "reference" (Spearman of the rank
      # residuals, the reference code's; re-sorts every residual per resample: ~4x the rest of the bootstrap
      # on CPU) | "closed" (Pearson of the rank residuals, the textbook partial Spearman)
      partial_forms=("reference", "closed"),
      # fixed layer per ROI as (ROI, layer) pairs: the study's Conv1->V1, Conv1->V2, Conv3->LOC, FC1->IT
      # (docs/methods.md §3.4); V3 and hV4, which P1 did not map, go to conv2 (between conv1 and conv3). An ROI that is
      # not listed (e.g. of another data set) is compared with its best layer per seed. The command line takes
      # "ROI:layer" strings: --config.stats.layer_for_roi='("hIT:fc1",)' (replaces the whole mapping)
      layer_for_roi=(
        ("V1", "conv1"),
        ("V2", "conv1"),
        ("V3", "conv2"),
        ("hV4", "conv2"),
        ("LOC", "conv3"),
        ("IT", "fc1"),
      ),
    )
  )
  return c


def set_schedule_epochs(c: ml_collections.ConfigDict, epochs: int) -> None:
  """Sets `schedule_epochs` (the cosine's length, the study: = its 40 training epochs) in every rule config
  and variant block that has one, e.g. to the demo's shorter run."""
  for rc in c.rule_configs.values():
    for block in [rc] + [v for v in rc.values() if isinstance(v, ml_collections.ConfigDict)]:
      if "schedule_epochs" in block:
        block.schedule_epochs = epochs


def shrink_for_tests(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The `:tiny` variant: same code paths, sizes small enough for a 2-core CPU test (about a minute)."""
  c.name += ":tiny"
  c.seeds = (1, 2)
  c.data.num_train = 256
  c.data.num_test = 100
  c.train.num_epochs = 2
  c.train.batch_size = 32
  c.train.milestones = (0, 1, 2)
  set_schedule_epochs(c, 2)
  c.eval.resolutions = (32, 64)
  c.eval.batch_size = 16
  c.stats.bootstrap_samples = 20
  c.stats.partial_forms = ("reference", "closed")  # every code path of the report
  c.brain.simulation.update(
    dict(
      n_stimuli=40,
      n_runs=4,
      n_test_concepts=4,
      roi_sizes=(("V1", 24), ("V2", 20), ("V3", 18), ("hV4", 16), ("lLOC", 10), ("rLOC", 8), ("IT", 30)),
      n_other_voxels=10,
    )
  )
  return c
