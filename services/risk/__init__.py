"""The risk service: approves or rejects each order intent against the user's
limits and live exposure, with a machine-readable reason.

- `checks`: the pure checks and `evaluate(intent, view) -> RiskVerdict`;
- `projection`: the exposure projection, `evolve(exposure, event)`;
- `events`: what risk records in its own streams (`risk-<user>`, `riskctl-global`);
- `core` / `writer`: the shell around them (event store, group commit);
- `service`: `RiskService`, wiring it to NATS.
"""
