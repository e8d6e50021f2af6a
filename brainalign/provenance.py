"""Fingerprints: every stored result is tied to exactly the inputs that made it.

A run is a chain of stages; each stage's output records a fingerprint of the inputs it depends on (and of
nothing else), so a workdir can never mix results of different settings:

  stage             outputs                                  inputs (besides the upstream stage's fingerprint)
  train-<rule>      checkpoints/<rule>/, logs/<rule>/        the rule's own config block (its active variant),
                                                             config.model, config.seeds, config.train, the
                                                             training data (config.data keys and a content
                                                             digest of the drawn images, labels and indices)
  features-<rule>   features/<rule>/                         config.eval (resolutions, bn_mode, batch_size,
                                                             concept_features), the stimulus list in order and
                                                             the content digest of every stimulus image
  rdms-<rule>       rdms/<rule>/                             config.eval.rdm_metric
  probe             probe/probe.npz                          the brain RDMs (content digest of what was loaded),
                                                             the pair sets, the stimuli (for the pixel controls)

Settings that cannot change a number (log verbosity, progress bars, paths of files whose content is digested)
are not part of any fingerprint. The tables in results/ and the figures are re-derived on every run from the
stored stages, and run_info.json records the fingerprints they came from.

A fingerprint is the first 16 hex digits of the SHA-256 of the canonical JSON of the inputs (sorted keys,
tuples as lists, arrays by their digest). The inputs themselves are stored beside it
(`<workdir>/stages/<stage>.json`), so a mismatch can be explained key by key (`differences`).
"""

import dataclasses
import hashlib
import json
import os
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from brainalign import io
from brainalign.errors import UserError

STAGES_DIR = "stages"
_SHOWN_CHANGES = 12  # lines of the mismatch message before "... and N more"


class ProvenanceError(UserError):
  """A workdir holds results of other settings than the command asks for."""


def canonical(value: Any) -> Any:
  """A JSON-able, order-stable copy: mappings with str keys, tuples as lists, NumPy scalars as Python numbers,
  arrays replaced by `array_digest`. ConfigDicts (anything with `to_dict`) are converted first."""
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, Mapping):
    return {str(k): canonical(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [canonical(v) for v in value]
  if isinstance(value, np.ndarray):
    return array_digest(value)
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, pathlib.PurePath):
    return str(value)
  return value


def fingerprint(inputs: Mapping[str, Any]) -> str:
  """16 hex digits of SHA-256 over the canonical JSON of `inputs`."""
  text = json.dumps(canonical(inputs), sort_keys=True, separators=(",", ":"), default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def array_digest(a: np.ndarray) -> str:
  """'sha256:<16 hex>' of an array's dtype, shape and bytes (C order)."""
  a = np.ascontiguousarray(a)
  h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
  if a.dtype.kind in "OU":  # strings: their text, not object pointers
    h.update("\x1f".join(map(str, a.ravel().tolist())).encode())
  else:
    h.update(a.tobytes())
  return "sha256:" + h.hexdigest()[:16]


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
  """'sha256:<16 hex>' of a file's bytes."""
  h = hashlib.sha256()
  with open(path, "rb") as f:
    while block := f.read(chunk):
      h.update(block)
  return "sha256:" + h.hexdigest()[:16]


def bytes_digest(data: bytes) -> str:
  """'sha256:<16 hex>' of bytes already in memory."""
  return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Stage:
  """One stage of a run: its name, the folders it writes (relative to the workdir), and its inputs.

  `upstream` names the stages whose fingerprints are part of the inputs: a change there makes this stage
  stale too, but is reported where it happened, not again here."""

  name: str
  outputs: tuple[str, ...]
  inputs: Mapping[str, Any]
  upstream: tuple["Stage", ...] = ()

  @property
  def fingerprint(self) -> str:
    """Fingerprint of the inputs and of every upstream stage's fingerprint."""
    return fingerprint(self.record_inputs())

  def record_inputs(self) -> dict:
    """The inputs as stored: own inputs plus {"upstream": {stage: fingerprint}}."""
    out = dict(canonical(self.inputs))
    if self.upstream:
      out["upstream"] = {u.name: u.fingerprint for u in self.upstream}
    return out

  def record(self) -> dict:
    """What `<workdir>/stages/<name>.json` holds."""
    return {
      "stage": self.name,
      "fingerprint": self.fingerprint,
      "outputs": list(self.outputs),
      "inputs": self.record_inputs(),
    }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(value, Mapping):
    out = {}
    for k, v in value.items():
      out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out
  return {prefix: value}


def _short(value: Any, limit: int = 60) -> str:
  text = json.dumps(value, default=str) if not isinstance(value, str) else value
  return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe_list_change(old: list, new: list) -> str:
  if len(old) != len(new):
    return f"{len(old)} → {len(new)} items"
  first = next(k for k, (a, b) in enumerate(zip(old, new)) if a != b)
  same_items = sorted(map(json.dumps, old)) == sorted(map(json.dumps, new))
  what = "same items, other order" if same_items else f"{sum(a != b for a, b in zip(old, new))} items differ"
  return f"{what}; first at position {first}: {_short(old[first], 30)} → {_short(new[first], 30)}"


def differences(old_inputs: Mapping[str, Any], new_inputs: Mapping[str, Any]) -> list[str]:
  """Human-readable 'key: old → new' lines for every input that differs (upstream fingerprints left out).

  Nested keys are dotted (`rule_config.learning_rate`); long lists are summarised."""
  old = _flatten({k: v for k, v in old_inputs.items() if k != "upstream"})
  new = _flatten({k: v for k, v in new_inputs.items() if k != "upstream"})
  lines = []
  for key in sorted(set(old) | set(new)):
    a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
    if a == b:
      continue
    if isinstance(a, list) and isinstance(b, list) and len(json.dumps(a)) + len(json.dumps(b)) > 80:
      lines.append(f"{key}: {_describe_list_change(a, b)}")
    else:
      lines.append(f"{key}: {_short(a)} → {_short(b)}")
  return lines


@dataclasses.dataclass(frozen=True)
class Mismatch:
  """A stage whose stored record differs from what the command would compute (or has outputs but no record)."""

  stage: Stage
  changes: tuple[str, ...]


def _record_path(workdir: pathlib.Path, name: str) -> pathlib.Path:
  return workdir / STAGES_DIR / f"{name}.json"


def stored_record(workdir: pathlib.Path, name: str) -> dict | None:
  """The stored record of a stage, or None."""
  path = _record_path(workdir, name)
  if not path.exists():
    return None
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ProvenanceError(
      f"{path}: unreadable stage record ({e})",
      hint="delete that file and rerun with --overwrite, or use a new --workdir",
    ) from e


def check(workdir: pathlib.Path, stages: Iterable[Stage]) -> list[Mismatch]:
  """Stages whose outputs exist in `workdir` but were made from other inputs (or carry no record)."""
  out = []
  for stage in stages:
    rec = stored_record(workdir, stage.name)
    if rec is None:
      if any((workdir / o).exists() for o in stage.outputs):
        out.append(Mismatch(stage, ("no fingerprint record: written by an older brainalign or by hand",)))
      continue
    if rec.get("fingerprint") != stage.fingerprint:
      changes = differences(rec.get("inputs", {}), stage.record_inputs())
      upstream_changed = rec.get("inputs", {}).get("upstream") != stage.record_inputs().get("upstream")
      if not changes and upstream_changed:
        changes = ["(follows from the changes above)"]
      out.append(Mismatch(stage, tuple(changes) or ("(fingerprint differs)",)))
  return out


def mismatch_message(workdir: pathlib.Path, mismatches: list[Mismatch]) -> str:
  """The short message of a `ProvenanceError`: what changed (old → new), grouped, and which stages it makes stale."""
  by_change: dict[str, list[str]] = {}
  for m in mismatches:
    for line in m.changes:
      by_change.setdefault(line, []).append(m.stage.name)
  lines = [f"{workdir} holds results made with other settings; changed since they were made:"]
  shown = [c for c in by_change if not c.startswith("(follows")]
  for change in shown[:_SHOWN_CHANGES]:
    stages = by_change[change]
    where = ", ".join(stages[:4]) + (f", … ({len(stages)} stages)" if len(stages) > 4 else "")
    lines.append(f"  {change}   [{where}]")
  if len(shown) > _SHOWN_CHANGES:
    lines.append(f"  … and {len(shown) - _SHOWN_CHANGES} more")
  lines.append("stale stages: " + ", ".join(m.stage.name for m in mismatches))
  return "\n".join(lines)


def raise_on_mismatch(workdir: pathlib.Path, mismatches: list[Mismatch]) -> None:
  """ProvenanceError with `mismatch_message` and the two ways on, if there are mismatches."""
  if mismatches:
    raise ProvenanceError(
      mismatch_message(workdir, mismatches),
      hint="use a new --workdir, or add --overwrite to discard exactly the stale stages and recompute them",
    )


def discard(workdir: pathlib.Path, mismatches: list[Mismatch]) -> list[str]:
  """Deletes the outputs and records of the stale stages (for --overwrite); returns the paths removed."""
  import shutil

  removed = []
  for m in mismatches:
    for rel in m.stage.outputs:
      path = workdir / rel
      if path.is_dir():
        shutil.rmtree(path)
        removed.append(rel)
      elif path.exists():
        path.unlink()
        removed.append(rel)
    rec = _record_path(workdir, m.stage.name)
    if rec.exists():
      rec.unlink()
  return removed


def write_records(workdir: pathlib.Path, stages: Iterable[Stage]) -> None:
  """Writes `<workdir>/stages/<stage>.json` for each stage (atomically; unchanged files are not rewritten)."""
  for stage in stages:
    path = _record_path(workdir, stage.name)
    text = json.dumps(stage.record(), indent=2, sort_keys=True) + "\n"
    if path.exists() and path.read_text() == text:
      continue
    with io.atomic_path(path) as tmp:
      tmp.write_text(text)


def verify_file(path: pathlib.Path, stored: str, expected: str, stage: str) -> None:
  """ProvenanceError if a file's embedded fingerprint differs from its stage's record."""
  if stored != expected:
    raise ProvenanceError(
      f"{path}: made with fingerprint {stored}, but the workdir's record of stage {stage} is {expected}; "
      "the file does not belong to the settings recorded beside it",
      hint="rerun the run with the same command and --overwrite, or use a new --workdir",
    )
