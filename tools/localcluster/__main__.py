import sys

from tools.localcluster.cli import main

sys.exit(main())
