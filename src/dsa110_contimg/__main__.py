import sys

from dsa110_contimg.cli import main

sys.exit(main())
