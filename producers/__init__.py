"""Product-side SDK: typed events (generated from ``schemas/``) and the Kafka publishers."""

from producers import events
from producers.publisher import AsyncPublisher, Delivered, Publisher

__all__ = ["AsyncPublisher", "Delivered", "Publisher", "events"]
