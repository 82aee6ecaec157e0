"""sfsync producers."""
