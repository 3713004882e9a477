-- An outbox row the bus refuses for what it is (a subject or size the server
-- never takes) is dead-lettered and kept here, marked dead, for inspection;
-- the relay reads only live rows.
ALTER TABLE outbox ADD COLUMN dead_at timestamptz, ADD COLUMN dead_reason text;
DROP INDEX outbox_producer;
CREATE INDEX outbox_producer ON outbox (producer, id) WHERE dead_at IS NULL;
