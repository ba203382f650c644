-- Events waiting for the relay (DESIGN.md "The submit path"): written in the same
-- transaction as the change they describe, deleted once RabbitMQ has confirmed them.
CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid        NOT NULL,
    type        text        NOT NULL,
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
