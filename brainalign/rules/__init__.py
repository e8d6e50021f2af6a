"""Learning-rule registry: an explicit {name: factory} dict (no import side effects).

A factory has the signature `create(model, rule_config, *, steps_per_epoch) -> LearningRule`.
Rules: `random` (untrained), `bp` (backprop), `fa` (feedback alignment), `pc` (predictive coding), `stdp`;
the last three have a `reference` and a `standard` variant chosen by `rule_config.variant`.
"""

from collections.abc import Callable
from typing import Any

from brainalign.rules import backprop, feedback_alignment, predictive_coding, stdp, untrained
from brainalign.types import LearningRule

_RULES: dict[str, Callable[..., LearningRule]] = {
  "random": untrained.create,
  "bp": backprop.create,
  "fa": feedback_alignment.create,
  "pc": predictive_coding.create,
  "stdp": stdp.create,
}


def names() -> tuple[str, ...]:
  """Registered rule names, sorted."""
  return tuple(sorted(_RULES))


def create(name: str, model: Any, rule_config: Any, *, steps_per_epoch: int) -> LearningRule:
  """Builds the named rule; an unknown name fails with the list of valid names."""
  try:
    factory = _RULES[name]
  except KeyError:
    raise ValueError(f"Unknown learning rule {name!r}; valid rules: {list(names())}") from None
  return factory(model, rule_config, steps_per_epoch=steps_per_epoch)
