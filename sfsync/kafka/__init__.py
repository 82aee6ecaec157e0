"""Kafka plumbing: the one place where sfsync builds Kafka clients and turns librdkafka errors into its own."""
