"""The report's statistics settings: the run's own `stats` block, with single keys overridden on request.

`resolve` starts from the `stats` block the run recorded in run_info.json (so a report never silently uses
another config's settings), applies the overrides given (`--config.stats.KEY=VALUE`), validates the result,
and says where each value came from. Also the BH-FDR/Holm families (`FAMILIES`, `correct_family`) and the
ROI -> layer mapping (`layer_mapping`).
"""

from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np
import pandas as pd

from brainalign import stats
from brainalign.errors import ConfigError
from brainalign.models import READOUT_LAYERS
from brainalign.provenance import canonical

# BH-FDR / Holm families (stats.family): the columns whose values split the tests into families. Every
# (resolution, pair set) section of the report is corrected separately; the pairwise-difference and the
# Δρ-from-epoch-0 tables are separate families (different questions).
FAMILIES = {
  "rule_roi_per_milestone": (
    ("epoch",),
    "all rule pairs × ROIs at one milestone (one family per milestone); for Δρ, all rules × ROIs at one milestone",
  ),
  "rule_roi_all_milestones": (
    (),
    "all rule pairs × ROIs × milestones (one family); for Δρ, all rules × ROIs × milestones",
  ),
  "rule_per_roi_milestone": (
    ("epoch", "roi"),
    "all rule pairs at one milestone and ROI (one family per milestone × ROI); for Δρ, all rules at one "
    "milestone and ROI",
  ),
}


def check_family(family: str) -> None:
  """ConfigError unless `family` is a key of `FAMILIES`."""
  if family not in FAMILIES:
    raise ConfigError(f"config.stats.family={family!r} is not a known family; expected one of {tuple(FAMILIES)}")


def correct_family(df: pd.DataFrame, family: str, alpha: float, label: str = "") -> pd.DataFrame:
  """Adds `family`, `q_bh`, `p_holm`, `significant_bh` to a table of tests, correcting `p_boot` within
  each declared family (rows sharing the values of `FAMILIES[family]` columns).

  Args:
    df: one row per test with a `p_boot` column (and `epoch`, `roi` columns as the family needs).
    family: a key of `FAMILIES`. alpha: significance level for `significant_bh`. label: family name prefix.
  Returns:
    a copy of df with the four columns.
  """
  check_family(family)
  df = df.copy()
  keys = list(FAMILIES[family][0])
  names = df[keys].astype(str).agg(lambda r: ", ".join(f"{k}={v}" for k, v in zip(keys, r)), axis=1) if keys else "all"
  df["family"] = label + names
  df["q_bh"] = np.nan
  df["p_holm"] = np.nan
  for _, idx in df.groupby("family", sort=False).groups.items():
    df.loc[idx, "q_bh"] = stats.bh_fdr(df.loc[idx, "p_boot"].to_numpy())
    df.loc[idx, "p_holm"] = stats.holm(df.loc[idx, "p_boot"].to_numpy())
  df["significant_bh"] = df.q_bh <= alpha
  return df


def layer_mapping(value: Any) -> dict[str, str]:
  """`stats.layer_for_roi` -> {ROI: layer}. Accepted forms: pairs (("V1", "conv1"), ...), "ROI:layer" strings
  (as `--config.stats.layer_for_roi=hIT:fc1` gives), or a mapping. An ROI not in it is compared with its best
  layer per seed."""
  if isinstance(value, Mapping) or hasattr(value, "items"):
    items = list(dict(value).items())
  else:
    items = []
    for entry in value or ():
      if isinstance(entry, str):
        roi, sep, layer = entry.partition(":")
        if not sep:
          raise ConfigError(f"config.stats.layer_for_roi entry {entry!r}: expected 'ROI:layer' or a (ROI, layer) pair")
        items.append((roi.strip(), layer.strip()))
      else:
        if len(entry) != 2:
          raise ConfigError(f"config.stats.layer_for_roi entry {entry!r}: expected a (ROI, layer) pair")
        items.append((str(entry[0]), str(entry[1])))
  bad = [layer for _, layer in items if layer not in READOUT_LAYERS]
  if bad:
    raise ConfigError(f"config.stats.layer_for_roi: unknown layer(s) {bad}; expected one of {READOUT_LAYERS}")
  return dict(items)


def partial_forms(stats_config: Any) -> tuple[str, ...]:
  """The partial-RSA forms of `stats.partial_forms` (validated); the first is the one the markdown shows."""
  forms = tuple(stats_config.partial_forms)
  if not forms or any(f not in stats.PARTIAL_FORMS for f in forms) or len(set(forms)) != len(forms):
    raise ConfigError(f"config.stats.partial_forms must be distinct names from {stats.PARTIAL_FORMS}, got {forms}")
  return forms


def validate(s: ml_collections.ConfigDict) -> None:
  """ConfigError for the first invalid key of a stats block."""
  if s.comparator not in stats.COMPARATORS:
    raise ConfigError(f"config.stats.comparator={s.comparator!r}; expected one of {stats.COMPARATORS}")
  check_family(str(s.family))
  partial_forms(s)
  layer_mapping(s.layer_for_roi)
  if not 0 < float(s.ci) < 1:
    raise ConfigError(f"config.stats.ci={s.ci}; expected a coverage in (0, 1), e.g. 0.95")
  for key in ("bootstrap_samples", "batch_size", "model_chunk"):
    if int(s[key]) < 1 or int(s[key]) != s[key]:
      raise ConfigError(f"config.stats.{key}={s[key]!r}; expected a positive integer")


def resolve(run_stats: Mapping, overrides: Mapping | None) -> tuple[ml_collections.ConfigDict, dict[str, str]]:
  """(stats settings, {key: "run" | "override"}) from the run's recorded block and the given overrides.

  Raises:
    ConfigError: an override names a key the stats block does not have, or a value is invalid.
  """
  base = dict(run_stats)
  given = dict(overrides.to_dict() if hasattr(overrides, "to_dict") else overrides or {})
  unknown = sorted(set(given) - set(base))
  if unknown:
    raise ConfigError(f"config.stats has no key(s) {unknown}; the run's stats block has {sorted(base)}")
  source = {k: ("override" if k in given and canonical(given[k]) != canonical(base[k]) else "run") for k in base}
  base.update(given)
  settings = ml_collections.ConfigDict(base)
  validate(settings)
  return settings, source
