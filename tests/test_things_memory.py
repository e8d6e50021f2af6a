"""Memory: preparing an ROI from a ≥ 200 MB THINGS-format ResponseData.h5 peaks far below the file size.

The file has the real release's trial structure (720 concepts × 12 sessions × 10 runs + 100 test images =
9,840 trials) and 2,700 voxels (≈ 205 MB of float64), 2,400 of them in the ROI, so reading the ROI's rows
at once would need ≈ 190 MB. The load runs in a fresh subprocess that measures the Python-level peak
(tracemalloc; NumPy reports its buffers to it) and the growth of the process's peak RSS (resource).

Needs ≈ 0.25 GB of free disk in the temporary folder; set BRAINALIGN_SKIP_MEMORY_TEST=1 to skip it
(it is also skipped automatically with less than 1 GB free). Takes about 10 s.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from brainalign.data import things_writer as tw

N_VOX, N_ROI = 2700, 2400

pytestmark = pytest.mark.skipif(
  os.environ.get("BRAINALIGN_SKIP_MEMORY_TEST", "") not in ("", "0"), reason="BRAINALIGN_SKIP_MEMORY_TEST is set"
)

_MEASURE = textwrap.dedent("""
    import json, resource, sys, tracemalloc
    from brainalign.data import things
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    brain = things.load_things_fmri(sys.argv[1], subjects=("sub-01",), rois={"V1": ("V1",)})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak": peak, "rss_growth": (rss1 - rss0) * 1024, "n_voxels": int(brain.n_voxels[0, 0]),
                      "shape": list(brain.rdm_vectors.shape)}))
""")


def test_roi_preparation_peaks_far_below_file_size(tmp_path):
  if shutil.disk_usage(tmp_path).free < 2**30:
    pytest.skip("less than 1 GB free in the temporary folder")
  concepts = [f"concept{k:03d}" for k in range(720)]
  design = tw.make_design(
    concepts,
    subject_id=1,
    n_sessions=12,
    n_runs=10,
    exemplar_for_session=[12, 4, 1, 10, 6, 11, 7, 2, 3, 8, 5, 9],
    test_concepts=concepts[:100],
    order_seed=1,
  )
  assert len(design) == 9840
  vox = tw.make_voxel_metadata(1, {"V1": N_ROI}, N_VOX - N_ROI, seed=0)
  responses = np.random.default_rng(0).standard_normal((N_VOX, len(design)))
  files = tw.write_subject(tmp_path / "betas_csv", "sub-01", design, vox, responses)
  del responses
  size = files.responses.stat().st_size
  assert size >= 200 * 10**6

  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(p) for p in sys.path if p]))
  out = subprocess.run(
    [sys.executable, "-c", _MEASURE, str(tmp_path / "betas_csv")], capture_output=True, text=True, env=env, timeout=120
  )
  assert out.returncode == 0, out.stderr[-3000:]
  m = json.loads(out.stdout.strip().splitlines()[-1])
  assert m["shape"] == [1, 1, 720 * 719 // 2] and m["n_voxels"] == N_ROI
  patterns_bytes = 720 * N_ROI * 8  # the [n, v] patterns the RDM needs: a floor for the peak
  roi_rows_bytes = N_ROI * 9840 * 8  # what reading the ROI at once would take
  assert patterns_bytes < m["peak"], m  # the measurement sees the arrays
  assert m["peak"] < size / 4, (m, size)
  assert m["peak"] < roi_rows_bytes / 4, m
  assert m["rss_growth"] < size * 0.4, (m, size)
