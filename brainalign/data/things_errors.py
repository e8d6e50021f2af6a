"""How the THINGS-fMRI reader reports a file that does not match the ``betas_csv`` layout.

``ThingsFormatError`` is the one error class of every reader part (``things_metadata``, ``things_selection``,
``things_voxels``, ``things_patterns``, ``things``); ``abbreviate`` shortens the lists its messages quote.
"""

from __future__ import annotations

from collections.abc import Sequence

from brainalign.errors import DataError

__all__ = ["ThingsFormatError", "abbreviate"]


class ThingsFormatError(DataError):
  """A THINGS-fMRI file does not have the expected structure or content.

  Every message names the file, the field/column and what was expected.
  """


def abbreviate(items: Sequence, limit: int = 10) -> str:
  """The first ``limit`` of ``items`` comma-separated (strings quoted), plus ``… (N in all)`` when cut."""
  items = list(items)
  head = ", ".join(repr(x) if isinstance(x, str) else str(x) for x in items[:limit])
  return head + (f", … ({len(items)} in all)" if len(items) > limit else "")
