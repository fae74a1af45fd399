import sys

from tools.devcluster.localcluster.cli import main

sys.exit(main())
