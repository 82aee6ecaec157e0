"""Avro in the Confluent wire format: topic schemas, the schema registry, and the codecs."""
