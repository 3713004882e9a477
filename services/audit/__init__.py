"""The audit service: a tamper-evident, redacted record of everything on the bus."""
