"""User-facing errors: one family of exceptions for everything a user can fix (config, data, caches, workdir).

`main.py` prints a `UserError` as a short block and exits with its code, without a traceback:

  brainalign: error: <what, naming the file and the field, what was found and what was expected>
    next: <the one thing to do next>

Exit codes: 2 for usage and config errors (`ConfigError`), 1 for everything else (data files, images,
caches, checkpoints, the workdir). A genuine bug is not a `UserError` and keeps its traceback. Library
callers get the same exceptions, typed; each is also a `ValueError`, `FileNotFoundError` or `RuntimeError`
where the code raised that type before, so existing `except` clauses keep working.
"""


class UserError(Exception):
  """An error the user can fix. `hint` is the one thing to do next; `exit_code` is what main.py exits with."""

  exit_code = 1

  def __init__(self, message: str, *, hint: str = ""):
    super().__init__(message)
    self.message = message
    self.hint = hint

  def __str__(self) -> str:
    return self.message + (f" ({self.hint})" if self.hint else "")

  def render(self) -> str:
    """The block main.py prints."""
    lines = [f"brainalign: error: {self.message}"]
    if self.hint:
      lines.append(f"  next: {self.hint}")
    return "\n".join(lines)


class ConfigError(UserError, ValueError):
  """A config key has a wrong type, value or combination (exit code 2)."""

  exit_code = 2


class DataError(UserError, ValueError):
  """An input file or folder is missing, unreadable or malformed."""


class MissingFileError(UserError, FileNotFoundError):
  """An input file or folder does not exist."""


class WorkdirError(UserError, RuntimeError):
  """The workdir (or another output folder) cannot be written, or holds something unusable."""


class CacheError(UserError, RuntimeError):
  """A cache (the prepared brain RDMs) is missing, stale or unreadable."""


class MissingDependencyError(UserError, ImportError):
  """An optional package that the chosen settings need is not installed."""


class TrainingDivergedError(UserError, FloatingPointError):
  """Training produced non-finite metrics (too high a learning rate, or bad data)."""
