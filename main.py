"""brainalign entry point: `python main.py [flags]` is the `brainalign` command (brainalign/cli.py).

python main.py                                            # the offline demo (simulated brain)
python main.py --config=configs/demo.py:tiny --workdir=/tmp/tiny
python main.py --config=configs/paper.py --workdir=runs/paper --config.brain.betas_dir=... (see README)
python main.py --mode=prepare --config=configs/paper.py --config.brain.betas_dir=...   # cache brain RDMs once
python main.py --mode=report --workdir=/tmp/tiny                 # statistics + report of a finished run
python main.py --mode=report --workdir=/tmp/tiny --config.stats.bootstrap_samples=200   # one setting changed
"""

import sys

from brainalign import cli, runtime

if __name__ == "__main__":
  runtime.prepare_process(sys.argv[1:])  # before any work (brainalign/runtime.py)
  sys.exit(cli.main(sys.argv))
