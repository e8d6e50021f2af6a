"""Typed settings at the boundary: the loaders receive these, never the whole ConfigDict.

`BrainSettings.of(config.brain)` and `DataSettings.of(config.data)` read every key the brain and training-data
loaders use (each declared once, with its default, in brainalign/configs/common.py) into frozen dataclasses; a
missing key is an error naming it, never a hidden default. `of` passes an instance through unchanged, so library
callers may build one directly.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

from brainalign.errors import ConfigError


def _read(block: Any, cls: type, where: str) -> dict:
  values = {}
  for f in dataclasses.fields(cls):
    try:
      values[f.name] = block[f.name]
    except KeyError:
      raise ConfigError(
        f"config.{where} has no key {f.name!r}; expected every key of brainalign/configs/common.py's {where} block"
      ) from None
  return values


def _plain(value: Any) -> Any:
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): _plain(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_plain(v) for v in value)
  return value


@dataclasses.dataclass(frozen=True)
class BrainSettings:
  """config.brain (see brainalign/configs/common.py for each key's meaning and values)."""

  source: str
  betas_dir: str
  images_dir: str
  subjects: tuple
  rois: tuple
  roi_definitions: dict
  selection: str
  zscore: str
  voxel_selection: str
  nc_testset_min: float
  prepared: str
  cache_check: str
  rdms_path: str
  stimuli_file: str
  rdms_sessions: str
  image_layout: str
  name: str
  cache_dir: str
  simulation: dict

  @classmethod
  def of(cls, brain: Any) -> "BrainSettings":
    """From config.brain (or an instance, returned as is)."""
    if isinstance(brain, cls):
      return brain
    values = {k: _plain(v) for k, v in _read(brain, cls, "brain").items()}
    values["roi_definitions"] = {
      k: (v,) if isinstance(v, str) else tuple(v) for k, v in values["roi_definitions"].items()
    }
    return cls(**values)

  @property
  def layout(self) -> str:
    """The stimulus image layout: `image_layout`, else "flat" for RDMs given as RDMs and "things" otherwise."""
    return self.image_layout or ("flat" if self.source == "rdms" else "things")


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """config.data (see brainalign/configs/common.py)."""

  source: str
  path: str
  tfds_data_dir: str
  num_train: int
  subset: str
  num_test: int
  subset_seed: int
  normalization: str

  @classmethod
  def of(cls, data: Any) -> "DataSettings":
    """From config.data (or an instance, returned as is)."""
    if isinstance(data, cls):
      return data
    return cls(**{k: _plain(v) for k, v in _read(data, cls, "data").items()})
