"""`python neurons/miner.py` — the original subnet's entry point, same flags as `tensorage miner`."""

import sys

from tensorage.cli import main

if __name__ == "__main__":
    main(["miner", *sys.argv[1:]])
