"""Mail to account holders: written to an outbox with the change that causes it, delivered over SMTP."""
