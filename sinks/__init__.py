"""sfsync sinks."""
