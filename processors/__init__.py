"""sfsync processors."""
