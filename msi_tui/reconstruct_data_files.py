"""`python -m msi_tui.reconstruct_data_files`: the seed program of that name, same options, headless."""

import sys

from msi_tui.cli import main

if __name__ == "__main__":
    sys.exit(main(["reconstruct", "--headless", *sys.argv[1:]]))
