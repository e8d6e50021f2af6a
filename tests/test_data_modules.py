"""The THINGS-fMRI reader, its writer and the simulated brain are modules with one job each (issue 14).

Checks that the split kept the public names (``things.<name>``, ``things_writer.<name>``, ``simulate.<name>``
for every name they exported before it), that ``ThingsFormatError`` is one class, that no reader imports
the writer (directly or through another module), that the modules stay small, and that the loader's reads
still go through ``things.read_voxel_rows`` (tests replace it to prove that nothing is read).
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from brainalign.data import simulate, things, things_writer

try:
  from tests.things_fixture import write_fixture
except ImportError:  # tests/ not importable as a package
  from things_fixture import write_fixture

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT / "brainalign" / "data"

# The public names before the split (things.__all__, things_writer.__all__, simulate.__all__).
THINGS_NAMES = (
  "ROI_DEFINITIONS SUBJECTS ThingsFormatError SubjectFiles find_subject_files read_stimulus_metadata "
  "read_voxel_metadata roi_voxel_rows read_voxel_rows zscore select_first_exemplars SELECTIONS ZSCORE_MODES "
  "Selection select_trials select_voxels correlation_rdm BrainData load_things_fmri cross_run_mask"
).split()
WRITER_NAMES = (
  "LEADING_COLUMNS ROI_COLUMNS GLASSER_COLUMNS V1_ROI_COLUMNS STIMULUS_COLUMNS default_stimulus_name make_design "
  "make_voxel_metadata SubjectFiles subject_file_names write_subject"
).split()
SIMULATE_NAMES = ["ROIS", "SimulationConfig", "ground_truth_features", "simulate_things_fmri"]

READERS = [
  "things",
  "things_layout",
  "things_errors",
  "things_metadata",
  "things_selection",
  "things_voxels",
  "things_patterns",
  "brain",
  "prepare",
  "rdm_sources",
]
WRITERS = {"things_writer", "things_write_design", "things_write_voxels"} | {p.stem for p in DATA.glob("simulate*.py")}


@pytest.mark.parametrize(
  "module, names", [(things, THINGS_NAMES), (things_writer, WRITER_NAMES), (simulate, SIMULATE_NAMES)]
)
def test_every_public_name_is_still_there(module, names):
  assert sorted(module.__all__) == sorted(names)
  missing = [n for n in names if not hasattr(module, n)]
  assert not missing, missing


def test_shared_names_are_one_object_in_reader_and_writer():
  from brainalign.data import brain, things_errors, things_layout

  assert things.ThingsFormatError is things_errors.ThingsFormatError
  assert things.BrainData is brain.BrainData
  for name in ("SubjectFiles", "subject_file_names", "ROI_COLUMNS"):
    assert getattr(things_writer, name) is getattr(things_layout, name)
  assert things.SubjectFiles is things_writer.SubjectFiles
  assert things.ROI_DEFINITIONS is things_layout.ROI_DEFINITIONS


def test_every_reader_part_raises_the_one_format_error(tmp_path):
  from brainalign.data import things_metadata, things_patterns, things_selection, things_voxels

  fx = write_fixture(tmp_path)
  files = fx["files"]["sub-01"]
  vox = things_metadata.read_voxel_metadata(files.voxel_metadata)
  stim = things_metadata.read_stimulus_metadata(files.stimulus_metadata)
  with pytest.raises(things.ThingsFormatError, match="no voxels"):
    things_voxels.roi_voxel_rows(vox.assign(V1=0), ("V1",))
  with pytest.raises(things.ThingsFormatError, match="no rows with trial_type == 'test'"):
    things_selection.select_trials(stim[stim["trial_type"] == "train"], "test_mean")
  with pytest.raises(things.ThingsFormatError, match="must lie in"):
    things_patterns.read_voxel_rows(files.responses, np.asarray([len(vox)]))
  with pytest.raises(things.ThingsFormatError, match="zero variance"):
    things_patterns.zscore(np.ones((2, 3)))


def _imported_modules(path: pathlib.Path) -> set[str]:
  """Names of the brainalign.data modules ``path`` imports (``from brainalign.data import x``, ``…data.x``)."""
  found = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module:
      if node.module == "brainalign.data":
        found |= {a.name for a in node.names}
      elif node.module.startswith("brainalign.data."):
        found.add(node.module.split(".")[2])
    elif isinstance(node, ast.Import):
      found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("brainalign.data.")}
  return found


@pytest.mark.parametrize("reader", READERS + ["validate", "probe"])
def test_no_reader_imports_the_writer(reader):
  path = DATA / f"{reader}.py" if reader not in ("validate", "probe") else ROOT / "brainalign" / f"{reader}.py"
  assert not _imported_modules(path) & WRITERS


def test_importing_the_readers_loads_no_writer_module():
  """Not even indirectly (``probe`` imports ``demo``, which writes the simulated brain, so it is not listed)."""
  code = (
    "import sys\n"
    "import brainalign.data.things, brainalign.data.prepare, brainalign.data.rdm_sources, brainalign.validate\n"
    f"print(sorted(m for m in sys.modules if m.split('.')[-1] in {sorted(WRITERS)!r}))\n"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
  assert out.stdout.strip() == "[]", out.stdout


SPLIT = sorted(p for p in DATA.glob("*.py") if p.stem.startswith(("things", "simulate")))


@pytest.mark.parametrize("path", SPLIT, ids=lambda p: p.name)
def test_modules_are_small(path):
  """At most 400 lines a module and 60 a function (``things_layout``'s column lists are declarations)."""
  source = path.read_text()
  assert source.count("\n") <= 400, f"{path.name}: {source.count(chr(10))} lines"
  long = [
    f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
    for node in ast.walk(ast.parse(source))
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > 60
  ]
  assert not long, f"{path.name}: {long}"


def test_loader_reads_voxel_rows_through_things_read_voxel_rows(tmp_path, monkeypatch):
  """test_prepare / test_bad_input replace things.read_voxel_rows to prove no voxel row is read: it must see all."""
  fx = write_fixture(tmp_path)
  real, calls = things.read_voxel_rows, []

  def counting(*args, **kwargs):
    calls.append(args[0])
    return real(*args, **kwargs)

  monkeypatch.setattr(things, "read_voxel_rows", counting)
  brain = things.load_things_fmri(fx["betas_dir"], rois={"V1": ("V1",), "LOC": ("lLOC", "rLOC")})
  assert len(calls) == 3 * 2  # one chunk per subject and ROI
  assert {pathlib.Path(c).name for c in calls} == {f"{s}_ResponseData.h5" for s in fx["subjects"]}

  def forbidden(*args, **kwargs):
    raise AssertionError("read")

  monkeypatch.setattr(things, "read_voxel_rows", forbidden)
  with pytest.raises(AssertionError, match="read"):
    things.load_things_fmri(fx["betas_dir"], rois={"V1": ("V1",)})
  assert brain.rdm_vectors.shape[:2] == (3, 2)
