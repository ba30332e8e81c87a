import sys

from zhbert.cli import main

sys.exit(main())
