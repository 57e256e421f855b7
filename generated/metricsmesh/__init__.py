"""Generated protobuf code for the metrics-mesh contracts (do not edit)."""
