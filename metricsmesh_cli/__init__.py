"""The `metrics-mesh` command line: demo fleet, aggregator, gateway, snapshot and top."""
