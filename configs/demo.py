"""Shortcut: `--config=configs/demo.py[:ARG]` from the repository root loads brainalign/configs/demo.py
(documented there)."""

from brainalign.configs.demo import get_config  # noqa: F401
