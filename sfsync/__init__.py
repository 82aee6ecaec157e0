"""sfsync: keep a product's data in step with Salesforce over Apache Kafka."""

__version__ = "0.1.0"
