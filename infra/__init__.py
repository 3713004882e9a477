"""Infrastructure: the NATS server configuration (JetStream, subject mappings, users and
permissions) and launchers for the embedded NATS and Postgres servers."""
