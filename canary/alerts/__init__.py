"""Alerts: events and the journal, the outbox, the delivery pipelines and their settings."""
