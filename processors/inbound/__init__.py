"""The inbound processor: ``salesforce.changes`` -> identity, echo and conflict rules -> ``product.*.inbound``."""
