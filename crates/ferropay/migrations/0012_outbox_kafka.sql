-- Each broker the outbox is relayed to keeps its own record of what it has published, so that
-- two relays running at once (NATS JetStream and Kafka) never hide an event from each other:
-- `published_at_ms` is the NATS relay's, `kafka_published_at_ms` the Kafka relay's. A cursor per
-- relay would not do: rows commit in another order than their ids and times, and a cursor past
-- a late commit would skip it. Events already in the outbox are Kafka's to publish too: a Kafka
-- relay started on a database with history sends all of it, oldest first (the outbox is the
-- record). The partial index keeps finding the unpublished rows cheap as the outbox grows.
-- Portable between SQLite and PostgreSQL.
ALTER TABLE outbox ADD COLUMN kafka_published_at_ms BIGINT;
CREATE INDEX outbox_kafka_unpublished ON outbox (created_at_ms, id)
    WHERE kafka_published_at_ms IS NULL;
