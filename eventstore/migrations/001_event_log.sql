-- The event log: the truth. One row per event; a stream is `<kind>-<id>`.
-- Partitioned by stream hash so one primary can carry many streams; the
-- global `position` comes from one sequence and, because appends take one
-- transaction-level advisory lock (see eventstore/store.py), position order
-- equals commit order: a reader of read_all never skips a late commit.

CREATE SEQUENCE event_position AS bigint;

CREATE TABLE events (
    stream          text        NOT NULL,
    version         bigint      NOT NULL CHECK (version >= 1),
    position        bigint      NOT NULL DEFAULT nextval('event_position'),
    type            text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    idempotency_key text,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (stream, version)
) PARTITION BY HASH (stream);

CREATE TABLE events_p0 PARTITION OF events FOR VALUES WITH (MODULUS 8, REMAINDER 0);
CREATE TABLE events_p1 PARTITION OF events FOR VALUES WITH (MODULUS 8, REMAINDER 1);
CREATE TABLE events_p2 PARTITION OF events FOR VALUES WITH (MODULUS 8, REMAINDER 2);
CREATE TABLE events_p3 PARTITION OF events FOR VALUES WITH (MODULUS 8, REMAINDER 3);
CREATE TABLE events_p4 PARTITION OF events FOR VALUES WITH (MODULUS 8, REMAINDER 4);
CREATE TABLE events_p5 PARTITION OF events FOR VALUES WITH (MODULUS 8, REMAINDER 5);
CREATE TABLE events_p6 PARTITION OF events FOR VALUES WITH (MODULUS 8, REMAINDER 6);
CREATE TABLE events_p7 PARTITION OF events FOR VALUES WITH (MODULUS 8, REMAINDER 7);

CREATE INDEX events_position ON events (position);
-- A retried append carries the same key and must append nothing twice.
CREATE UNIQUE INDEX events_idempotency ON events (stream, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- The latest snapshot per stream bounds recovery time.
CREATE TABLE snapshots (
    stream     text        PRIMARY KEY,
    version    bigint      NOT NULL,
    type       text        NOT NULL,
    data       jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox: written in the same transaction as the events,
-- relayed to JetStream with Nats-Msg-Id = msg_id, deleted once acked.
-- Each producing service relays only its own rows, with its own bus
-- credentials, so least-privilege permissions hold for the relay too.
CREATE TABLE outbox (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    producer   text        NOT NULL,
    subject    text        NOT NULL,
    msg_id     text        NOT NULL,
    payload    bytea       NOT NULL,
    headers    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_producer ON outbox (producer, id);

-- Consumer tracking: a message id a consumer has acted on, written in the
-- same transaction as that consumer's effects, so a redelivery does nothing.
CREATE TABLE processed_messages (
    consumer     text        NOT NULL,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

-- Small key/value cursors for services (relay positions, channel offsets).
CREATE TABLE cursors (
    name       text        PRIMARY KEY,
    value      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
