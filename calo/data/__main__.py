"""Write a file of reference showers in the EleEscan layout.

    python -m calo.data --showers 10000 --energy 100 500 --seed 1 --out data/reference.h5
"""

from __future__ import annotations

import argparse
import sys
import time

from calo.data.eleescan import write_eleescan
from calo.data.reference import SIMULATOR_VERSION, simulate_reference


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m calo.data", description=__doc__.split("\n")[0])
    parser.add_argument("--showers", type=_positive_int, required=True, help="number of showers")
    parser.add_argument("--energy", type=float, nargs=2, default=(100.0, 500.0),
                        metavar=("MIN", "MAX"), help="primary energy range in GeV (uniform)")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--workers", type=_positive_int, default=None,
                        help="processes (default: every CPU this process may use)")
    parser.add_argument("--out", required=True, help="output .h5 file")
    args = parser.parse_args(argv)
    low, high = args.energy
    if not 0 < low < high:
        parser.error(f"--energy needs 0 < MIN < MAX, got {low} {high}")
    start = time.perf_counter()
    showers = simulate_reference(args.showers, low, high, args.seed, workers=args.workers)
    elapsed = time.perf_counter() - start
    path = write_eleescan(args.out, showers, attrs={"generator": "calo.data.simulator",
                                                     "simulator_version": SIMULATOR_VERSION,
                                                     "seed": args.seed})
    print(f"wrote {len(showers)} showers ({low:g}-{high:g} GeV) to {path} "
          f"in {elapsed:.1f} s ({len(showers) / elapsed:.0f} showers/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
