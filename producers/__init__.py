"""Product-side SDK: typed events (generated from ``schemas/``) and the Kafka publishers."""

from sfsync.producers import events
from sfsync.producers.publisher import AsyncPublisher, Delivered, Publisher

__all__ = ["AsyncPublisher", "Delivered", "Publisher", "events"]
