import sys

from msi_tui.cli import main

sys.exit(main())
