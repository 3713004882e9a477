"""Broker adapters of the execution service, behind the broker port (`contracts.broker`):
the paper exchange over NATS (`paper_client`) and MetaApi (`metaapi*`)."""
