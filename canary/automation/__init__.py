"""What moves traffic without an operator: ramp plans, the canary analysis, the SLO watch, the proactive shift, under a lease."""
