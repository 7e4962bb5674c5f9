"""Trains the default codec (thin wrapper over `codec train`): python scripts/train_codec.py CORPUS RUN_DIR [...]"""

import sys

from codec.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
