"""Compares two runs' results/alignment.csv row by row (merged on every key column).

    python bench/compare_alignment.py RUN_A/results/alignment.csv RUN_B/results/alignment.csv

Prints the row count, the largest and mean |rho_a - rho_b|, the share of identical rows and the largest
difference per rule; exits 1 if the two files do not hold the same rows.
"""

import sys

import pandas as pd

KEYS = ["rule", "seed", "epoch", "layer", "roi", "subject", "resolution", "pairs"]


def main(a_path: str, b_path: str) -> int:
  a, b = pd.read_csv(a_path), pd.read_csv(b_path)
  m = a.merge(b, on=KEYS, suffixes=("_a", "_b"))
  if not len(m) == len(a) == len(b):
    print(f"different rows: {len(a)} and {len(b)}, {len(m)} in common")
    return 1
  d = (m.rho_a - m.rho_b).abs()
  print(f"rows {len(m)}  max |diff| {d.max():.3g}  mean {d.mean():.3g}  identical {(d == 0).mean():.1%}")
  print(m.assign(d=d).groupby("rule").d.max().to_string())
  return 0


if __name__ == "__main__":
  sys.exit(main(*sys.argv[1:3]))
