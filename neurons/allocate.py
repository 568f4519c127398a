"""`python neurons/allocate.py` — the original subnet's entry point, same flags as `tensorage allocate`."""

import sys

from tensorage.cli import main

if __name__ == "__main__":
    main(["allocate", *sys.argv[1:]])
