"""`python neurons/validator.py` — the original subnet's entry point, same flags as `tensorage validator`."""

import sys

from tensorage.cli import main

if __name__ == "__main__":
    main(["validator", *sys.argv[1:]])
