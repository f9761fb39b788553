"""`python -m msi_tui.upload_data_file`: the seed program of that name, same options, headless."""

import sys

from msi_tui.cli import main

if __name__ == "__main__":
    sys.exit(main(["upload-file", *sys.argv[1:]]))
