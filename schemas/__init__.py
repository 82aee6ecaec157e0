"""The Avro contracts (``*.avsc``): the single source of truth for every topic's records."""

from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent
