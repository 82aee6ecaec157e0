"""The outbound processor: product events -> mapping rules -> ``sfsync.writes``."""
