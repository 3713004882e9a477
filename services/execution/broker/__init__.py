"""The broker port and its implementations: paper (in-process and over NATS) and MetaApi."""
