"""sfsync sources."""
