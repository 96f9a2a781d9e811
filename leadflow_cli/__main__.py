"""`python -m leadflow_cli`, the same as the `leadflow` console script."""

import sys

from leadflow_cli.main import main

sys.exit(main())
