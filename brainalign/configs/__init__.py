"""The experiment configs: `common.py` declares every key brainalign reads (with the study's values), `demo.py`
is the offline demo (the default), `paper.py` the study's settings on the real data. Pass one to the command
line as a file, `--config=configs/demo.py:tiny` from the repository root (the shortcuts in configs/) or by its
path in the package; import them as `brainalign.configs.<name>`."""
