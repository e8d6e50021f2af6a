"""The stored run: where each stage's output lives in a workdir, and how it is written and read back.

Layout of a workdir (every file written atomically; each stage's fingerprint is embedded in its files and
recorded in `stages/<stage>.json`, see brainalign.provenance):
  run_info.json                      config, data source, stage fingerprints, versions (written after the checks)
  stages/<stage>.json                the inputs and fingerprint of each stage
  checkpoints/<rule>/<epoch>/        Orbax checkpoints of the multi-seed TrainState (milestones only)
  logs/<rule>/epoch_XXXX.json        per-epoch training metrics of every seed
  features/<rule>/epoch_XXXX.npz     readout features [S, n, d] per `<res>px/<layer>` (no activation maps)
  rdms/<rule>/<res>px.npz            model RDMs `vectors` [S, M, L, P] float32 over all pairs
  probe/probe.npz                    the brain RDMs the run used, its pair sets, the pixel/luminance control RDMs
  results/*.csv, results/rules.json  tidy tables, re-derived from the stages on every run
  figures/*.png
  report/                            `main.py --mode=report` (reads only the files above)
"""

import dataclasses
import json
import pathlib

import numpy as np

from brainalign import io
from brainalign.data.brain import BrainData
from brainalign.errors import MissingFileError, WorkdirError

PROBE = pathlib.Path("probe") / "probe.npz"
RUN_INFO = "run_info.json"


def feature_path(workdir: pathlib.Path, rule: str, epoch: int) -> pathlib.Path:
  """features/<rule>/epoch_XXXX.npz."""
  return workdir / "features" / rule / f"epoch_{int(epoch):04d}.npz"


def log_path(workdir: pathlib.Path, rule: str, epoch: int) -> pathlib.Path:
  """logs/<rule>/epoch_XXXX.json."""
  return workdir / "logs" / rule / f"epoch_{int(epoch):04d}.json"


def rdm_path(workdir: pathlib.Path, rule: str, resolution: int) -> pathlib.Path:
  """rdms/<rule>/<res>px.npz."""
  return workdir / "rdms" / rule / f"{int(resolution)}px.npz"


def _unreadable(path: pathlib.Path, e: Exception) -> WorkdirError:
  return WorkdirError(
    f"{path}: unreadable ({type(e).__name__}: {e})",
    hint="the file is damaged; delete it and rerun the same command to recompute it",
  )


def _load_npz(path: pathlib.Path) -> dict:
  if not path.exists():
    raise MissingFileError(f"{path} not found", hint="rerun the run (same command) to recompute it")
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  except Exception as e:  # zipfile.BadZipFile, OSError, ValueError, EOFError ...
    raise _unreadable(path, e) from e


def read_features(path: pathlib.Path) -> dict:
  """{"<res>px/<layer>": [S, n, d]} of one milestone's feature file (its embedded fingerprint left out)."""
  z = _load_npz(path)
  z.pop("fingerprint", None)
  return z


def write_rdms(path: pathlib.Path, vectors: np.ndarray, *, fingerprint: str, **labels) -> None:
  """Model RDMs `vectors` [S, M, L, P] float32 plus label arrays (seeds, epochs, layers, stimuli, metric, data)."""
  arrays = {k: np.asarray(v) for k, v in labels.items()}
  with io.atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, vectors=np.asarray(vectors, np.float32), fingerprint=np.asarray(fingerprint), **arrays)


def read_rdms(path: pathlib.Path) -> dict:
  """{vectors [S, M, L, P], seeds, epochs, layers, stimuli, metric, data, fingerprint (str)}."""
  z = _load_npz(path)
  z["fingerprint"] = str(z["fingerprint"])
  return z


def stored_fingerprint(path: pathlib.Path) -> str | None:
  """The fingerprint embedded in an .npz written by this module, or None when there is none or it is unreadable."""
  try:
    with np.load(path, allow_pickle=False) as z:
      return str(z["fingerprint"]) if "fingerprint" in z.files else None
  except Exception:
    return None


@dataclasses.dataclass(frozen=True)
class StoredProbe:
  """probe/probe.npz: the brain data a run used and what the report needs besides the model RDMs.

  flat: {pair set: int64 [P'] positions in the all-pairs order}; controls: {res: {"pixel", "luminance": [P]}}.
  """

  data: str
  name: str
  description: str
  brain: BrainData
  flat: dict
  controls: dict
  fingerprint: str


def write_probe(workdir: pathlib.Path, probe_set, fingerprint: str) -> None:
  """Writes probe/probe.npz from a `probe.ProbeSet` (the brain RDMs as float64, exactly as loaded)."""
  b = probe_set.brain
  names, rows = b.exemplar_images()
  arrays = {
    "rdm_vectors": np.asarray(b.rdm_vectors, np.float64),
    "subjects": np.asarray(b.subjects, str),
    "subject_groups": np.asarray(b.groups(), str),
    "rois": np.asarray(b.rois, str),
    "stimuli": np.asarray(b.stimuli, str),
    "concepts": np.asarray(b.concepts, str),
    "runs": np.asarray(b.runs, np.int64),
    "trial_runs": b.item_runs(),
    "n_voxels": np.asarray(b.n_voxels, np.int64),
    "exemplars": np.asarray(names, str),
    "exemplar_items": rows,
  }
  arrays.update({f"pairs/{k}": np.asarray(v, np.int64) for k, v in probe_set.flat.items()})
  for res, c in probe_set.controls.items():
    arrays.update({f"control/{name}/{res}": np.asarray(v, np.float32) for name, v in c.items()})
  meta = {
    "data": probe_set.data,
    "name": probe_set.name,
    "description": probe_set.description,
    "source": b.source,
    "preparation": b.preparation,
  }
  with io.atomic_path(workdir / PROBE) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, meta=np.asarray(json.dumps(meta)), fingerprint=np.asarray(fingerprint), **arrays)


def read_probe(workdir: pathlib.Path) -> StoredProbe:
  """Reads probe/probe.npz (see `write_probe`)."""
  path = workdir / PROBE
  z = _load_npz(path)
  meta = json.loads(str(z["meta"]))
  groups = tuple(z["subject_groups"].tolist())
  subjects = tuple(z["subjects"].tolist())
  brain = BrainData(
    rdm_vectors=z["rdm_vectors"],
    subjects=subjects,
    rois=tuple(z["rois"].tolist()),
    stimuli=tuple(z["stimuli"].tolist()),
    concepts=tuple(z["concepts"].tolist()),
    runs=z["runs"],
    n_voxels=z["n_voxels"],
    source=meta["source"],
    preparation=meta["preparation"],
    trial_runs=z["trial_runs"],
    exemplars=tuple(z["exemplars"].tolist()),
    exemplar_items=z["exemplar_items"],
    subject_groups=groups if groups != subjects else None,
  )
  flat = {k.split("/", 1)[1]: v for k, v in z.items() if k.startswith("pairs/")}
  controls: dict = {}
  for k, v in z.items():
    if k.startswith("control/"):
      _, name, res = k.split("/")
      controls.setdefault(int(res), {})[name] = v
  return StoredProbe(
    data=meta["data"],
    name=meta["name"],
    description=meta["description"],
    brain=brain,
    flat=flat,
    controls=controls,
    fingerprint=str(z["fingerprint"]),
  )


def read_run_info(workdir: pathlib.Path) -> dict:
  """run_info.json of a run, or MissingFileError saying what --workdir must be."""
  path = workdir / RUN_INFO
  if not path.exists():
    raise MissingFileError(
      f"{path} not found: --workdir must be the folder of a finished run",
      hint="run `python main.py --workdir=...` first, or point --workdir at a run's folder",
    )
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise _unreadable(path, e) from e


def clean_temporaries(workdir: pathlib.Path) -> list[pathlib.Path]:
  """Removes what a killed write left behind: `io.atomic_path`'s `.<name>.*.tmp` files and Orbax's temporary
  checkpoint folders (`*.orbax-checkpoint-tmp*`). Returns the paths removed."""
  import shutil

  removed = []
  if not workdir.exists():
    return removed
  for path in sorted(workdir.rglob(".*.tmp")):
    if path.is_file():
      path.unlink()
      removed.append(path)
  for path in sorted(workdir.glob("checkpoints/*/*")):
    if path.is_dir() and ".orbax-checkpoint-tmp" in path.name:
      shutil.rmtree(path)
      removed.append(path)
  return removed
