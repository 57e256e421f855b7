"""`python -m metricsmesh_cli`: the same as the `metrics-mesh` console script."""

import sys

from metricsmesh_cli.main import main

sys.exit(main())
