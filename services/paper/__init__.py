"""The paper exchange: a simulated broker on its own service, behind the same broker port
(`contracts.broker`) as MetaApi. Execution reaches it over NATS only (`contracts.paper_wire`)."""
