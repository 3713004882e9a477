"""The shared runtime every service runs on.

It holds the NATS connection (`bus`), the JetStream consumers (`consumer`),
tracing and metrics, the supervisor, the `sigrelay` CLI, and the credential
vault (`credentials`): broker tokens are sealed by the actors service and
opened by the execution service with the same per-user data keys, so
crypto-shredding a user makes their tokens unreadable to both.
"""
