"""Metrics pushed from outside the agents: the one ingestion path and its state.

`ingestor.Ingestor` is the path every surface feeds (the Ingest RPC behind seed 003's and
seed 004's REST bodies, OTLP over gRPC and HTTP); `series.py` keeps the pushed series,
`services.py` the pushed services the rounds read as rows, `bounds.py` checks every item,
`settings.py` is the `[ingest]` table. Nothing is imported here, so the aggregator's model can
use `model.py` without loading the rest.
"""
