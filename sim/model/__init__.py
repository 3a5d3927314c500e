"""The torch side: the model zoo, datasets and training, the traced channel-flow graph, partitions and the
per-device layer shards."""
