"""Tools for a developer's machine: the local Kafka + registry stack, schema codegen, the demo."""
