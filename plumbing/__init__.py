"""Plumbing the services share: settings, Kafka/S3/MLflow clients, artifact I/O, logging helpers.

Below ``batch``, ``stream_app`` and ``dashboard``; imports only ``schemas`` and ``scratch_models``.
"""
