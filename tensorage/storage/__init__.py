"""On-disk state of a node: layout, partition plan, plot and shard files, SQLite indexes."""
