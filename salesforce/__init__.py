"""sfsync salesforce."""
