"""The THINGS-fMRI ``betas_csv`` layout: file names, column names and constants of the release.

Shared by the reader (``things`` and its parts) and the writer (``things_writer``), so that neither imports
the other: a subject's three files (``SubjectFiles``, ``subject_file_names``; ``docs/data-formats.md`` §3), the
HDF5 dataset of the responses (``RESPONSE_DATASET``, §4), the StimulusMetadata header (§5), the VoxelMetadata
columns (§6: 13 leading, 29 ROI masks, 180 Glasser parcels), the subjects and releases, and the study's ROIs
as unions of mask columns (``docs/methods.md`` §7.4). Nothing here reads or writes a file.
"""

from __future__ import annotations

import dataclasses
import pathlib

__all__ = [
  "LEADING_COLUMNS",
  "ROI_COLUMNS",
  "V1_ROI_COLUMNS",
  "GLASSER_COLUMNS",
  "STIMULUS_COLUMNS",
  "RESPONSE_DATASET",
  "RELEASES",
  "SUBJECTS",
  "ROI_DEFINITIONS",
  "SubjectFiles",
  "subject_file_names",
  "check_release",
]

#: The 13 leading VoxelMetadata columns (docs/data-formats.md §6.1), in file order.
LEADING_COLUMNS: tuple[str, ...] = (
  "voxel_id",
  "subject_id",
  "voxel_x",
  "voxel_y",
  "voxel_z",
  "nc_singletrial",
  "nc_testset",
  "splithalf_uncorrected",
  "splithalf_corrected",
  "prf-eccentricity",
  "prf-polarangle",
  "prf-rsquared",
  "prf-size",
)

#: The 29 ROI mask columns (docs/data-formats.md §6.2), in file order. ``IT`` exists only in v2.
ROI_COLUMNS: tuple[str, ...] = (
  "V1",
  "V2",
  "V3",
  "hV4",
  "VO1",
  "VO2",
  "LO1 (prf)",
  "LO2 (prf)",
  "TO1",
  "TO2",
  "V3b",
  "V3a",
  "lEBA",
  "rEBA",
  "lFFA",
  "rFFA",
  "lOFA",
  "rOFA",
  "lSTS",
  "rSTS",
  "lPPA",
  "rPPA",
  "lRSC",
  "rRSC",
  "lTOS",
  "rTOS",
  "lLOC",
  "rLOC",
  "IT",
)

#: The ROI columns of the v1 release (no ``IT``).
V1_ROI_COLUMNS: tuple[str, ...] = tuple(c for c in ROI_COLUMNS if c != "IT")

#: All 180 Glasser HCP-MMP1 parcel columns (docs/data-formats.md §6.3), in file order; two names contain
#: an embedded newline (``'glasser-p9-\n46v'``, ``'glasser-a9-\n46v'``).
GLASSER_COLUMNS: tuple[str, ...] = (
  "glasser-V1",
  "glasser-MST",
  "glasser-V6",
  "glasser-V2",
  "glasser-V3",
  "glasser-V4",
  "glasser-V8",
  "glasser-4",
  "glasser-3b",
  "glasser-FEF",
  "glasser-PEF",
  "glasser-55b",
  "glasser-V3A",
  "glasser-RSC",
  "glasser-POS2",
  "glasser-V7",
  "glasser-IPS1",
  "glasser-FFC",
  "glasser-V3B",
  "glasser-LO1",
  "glasser-LO2",
  "glasser-PIT",
  "glasser-MT",
  "glasser-A1",
  "glasser-PSL",
  "glasser-SFL",
  "glasser-PCV",
  "glasser-STV",
  "glasser-7Pm",
  "glasser-7m",
  "glasser-POS1",
  "glasser-23d",
  "glasser-v23ab",
  "glasser-d23ab",
  "glasser-31pv",
  "glasser-5m",
  "glasser-5mv",
  "glasser-23c",
  "glasser-5L",
  "glasser-24dd",
  "glasser-24dv",
  "glasser-7AL",
  "glasser-SCEF",
  "glasser-6ma",
  "glasser-7Am",
  "glasser-7Pl",
  "glasser-7PC",
  "glasser-LIPv",
  "glasser-VIP",
  "glasser-MIP",
  "glasser-1",
  "glasser-2",
  "glasser-3a",
  "glasser-6d",
  "glasser-6mp",
  "glasser-6v",
  "glasser-p24pr",
  "glasser-33pr",
  "glasser-a24pr",
  "glasser-p32pr",
  "glasser-a24",
  "glasser-d32",
  "glasser-8BM",
  "glasser-p32",
  "glasser-10r",
  "glasser-47m",
  "glasser-8Av",
  "glasser-8Ad",
  "glasser-9m",
  "glasser-8BL",
  "glasser-9p",
  "glasser-10d",
  "glasser-8C",
  "glasser-44",
  "glasser-45",
  "glasser-47l",
  "glasser-a47r",
  "glasser-6r",
  "glasser-IFJa",
  "glasser-IFJp",
  "glasser-IFSp",
  "glasser-IFSa",
  "glasser-p9-\n46v",
  "glasser-46",
  "glasser-a9-\n46v",
  "glasser-9-46d",
  "glasser-9a",
  "glasser-10v",
  "glasser-a10p",
  "glasser-10pp",
  "glasser-11l",
  "glasser-13l",
  "glasser-OFC",
  "glasser-47s",
  "glasser-LIPd",
  "glasser-6a",
  "glasser-i6-8",
  "glasser-s6-8",
  "glasser-43",
  "glasser-OP4",
  "glasser-OP1",
  "glasser-OP2-3",
  "glasser-52",
  "glasser-RI",
  "glasser-PFcm",
  "glasser-PoI2",
  "glasser-TA2",
  "glasser-FOP4",
  "glasser-MI",
  "glasser-Pir",
  "glasser-AVI",
  "glasser-AAIC",
  "glasser-FOP1",
  "glasser-FOP3",
  "glasser-FOP2",
  "glasser-PFt",
  "glasser-AIP",
  "glasser-EC",
  "glasser-PreS",
  "glasser-H",
  "glasser-ProS",
  "glasser-PeEc",
  "glasser-STGa",
  "glasser-PBelt",
  "glasser-A5",
  "glasser-PHA1",
  "glasser-PHA3",
  "glasser-STSda",
  "glasser-STSdp",
  "glasser-STSvp",
  "glasser-TGd",
  "glasser-TE1a",
  "glasser-TE1p",
  "glasser-TE2a",
  "glasser-TF",
  "glasser-TE2p",
  "glasser-PHT",
  "glasser-PH",
  "glasser-TPOJ1",
  "glasser-TPOJ2",
  "glasser-TPOJ3",
  "glasser-DVT",
  "glasser-PGp",
  "glasser-IP2",
  "glasser-IP1",
  "glasser-IP0",
  "glasser-PFop",
  "glasser-PF",
  "glasser-PFm",
  "glasser-PGi",
  "glasser-PGs",
  "glasser-V6A",
  "glasser-VMV1",
  "glasser-VMV3",
  "glasser-PHA2",
  "glasser-V4t",
  "glasser-FST",
  "glasser-V3CD",
  "glasser-LO3",
  "glasser-VMV2",
  "glasser-31pd",
  "glasser-31a",
  "glasser-VVC",
  "glasser-25",
  "glasser-s32",
  "glasser-pOFC",
  "glasser-PoI1",
  "glasser-Ig",
  "glasser-FOP5",
  "glasser-p10p",
  "glasser-p47r",
  "glasser-TGv",
  "glasser-MBelt",
  "glasser-LBelt",
  "glasser-A4",
  "glasser-STSva",
  "glasser-TE1m",
  "glasser-PI",
  "glasser-a32pr",
  "glasser-p24",
)

#: StimulusMetadata header of the v2 release (v1: the same without ``concept``).
STIMULUS_COLUMNS: tuple[str, ...] = (
  "trial_type",
  "session",
  "run",
  "subject_id",
  "trial_id",
  "stimulus",
  "concept",
)

#: The HDF5 dataset of ``sub-XX_ResponseData.h5`` that holds the responses ``[n_vox, n_trials]`` (rows in
#: ``voxel_id`` order, columns in ``trial_id`` order): the values block of the pandas fixed-format store.
RESPONSE_DATASET = "ResponseData/block0_values"

#: Releases of the single-trial data: ``v1`` (41 VoxelMetadata columns, no ``concept``) and ``v2``.
RELEASES = ("v1", "v2")

#: The release's subjects.
SUBJECTS = ("sub-01", "sub-02", "sub-03")

#: Study ROI name -> VoxelMetadata mask columns whose union defines it (docs/methods.md §7.4).
ROI_DEFINITIONS: dict[str, tuple[str, ...]] = {
  "V1": ("V1",),
  "V2": ("V2",),
  "V3": ("V3",),
  "hV4": ("hV4",),
  "LOC": ("lLOC", "rLOC"),
  "IT": ("IT",),
}


def check_release(release: str) -> None:
  """Raise ``ValueError`` unless ``release`` is one of ``RELEASES``."""
  if release not in RELEASES:
    raise ValueError(f"release must be one of {RELEASES}, got {release!r}")


@dataclasses.dataclass(frozen=True)
class SubjectFiles:
  """The three betas_csv files of one subject."""

  subject: str
  responses: pathlib.Path
  stimulus_metadata: pathlib.Path
  voxel_metadata: pathlib.Path


_NAME_SETS = {
  "public": ("{s}_ResponseData.h5", "{s}_StimulusMetadata.csv", "{s}_VoxelMetadata.csv"),
  "reference": (
    "{s}_task-things_voxel-wise-responses.h5",
    "{s}_task-things_stimulus-metadata.csv",
    "{s}_task-things_voxel-metadata.csv",
  ),
}


def subject_file_names(subject: str, name_set: str = "public") -> tuple[str, str, str]:
  """``(responses, stimulus_metadata, voxel_metadata)`` file names of one subject.

  ``name_set='public'``: the figshare release (``sub-01_ResponseData.h5``,
  ``sub-01_StimulusMetadata.csv``, ``sub-01_VoxelMetadata.csv``); ``'reference'``: the names the
  study's reference implementation reads (``sub-01_task-things_voxel-wise-responses.h5``,
  ``sub-01_task-things_stimulus-metadata.csv``, ``sub-01_task-things_voxel-metadata.csv``).
  """
  if name_set not in _NAME_SETS:
    raise ValueError(f"name_set must be one of {list(_NAME_SETS)}, got {name_set!r}")
  r, s, v = _NAME_SETS[name_set]
  return r.format(s=subject), s.format(s=subject), v.format(s=subject)
