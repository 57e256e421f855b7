"""metrics-mesh aggregator: fan-out rounds over every agent, snapshots, history and streaming."""
