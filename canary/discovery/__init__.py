"""Which nodes exist and how they are: run-time membership, DNS discovery, active health checks, the shared routing state."""
