"""Shortcut: `--config=configs/paper.py[:ARG]` from the repository root loads brainalign/configs/paper.py
(documented there)."""

from brainalign.configs.paper import get_config  # noqa: F401
