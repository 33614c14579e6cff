import sys

from bmpipe.cli import main

sys.exit(main())
