"""Event and record contracts, dataset profiles and topic names. Pure code, no I/O.

One schema source serves Kafka, HTTP and Parquet.
"""

from schemas.events import (
    SCHEMA_VERSION,
    ChurnAlert,
    CustomerEvent,
    DeadLetter,
    EventValidationError,
    ModelUpdatedEvent,
    ScoreEvent,
    format_validation_error,
)
from schemas.profiles import TELCO, DatasetProfile, get_profile
from schemas.topics import Topics

__all__ = [
    "SCHEMA_VERSION",
    "TELCO",
    "ChurnAlert",
    "CustomerEvent",
    "DatasetProfile",
    "DeadLetter",
    "EventValidationError",
    "ModelUpdatedEvent",
    "ScoreEvent",
    "Topics",
    "format_validation_error",
    "get_profile",
]
