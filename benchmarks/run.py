"""The mechanism benchmark (same as `gendsl bench`).

    python benchmarks/run.py [--quick] [--out runs/bench]
"""

import sys

from gendsl.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
