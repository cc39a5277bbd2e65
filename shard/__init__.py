"""shard layer."""
