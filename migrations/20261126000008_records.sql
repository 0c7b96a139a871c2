-- The records store: what syncs save, keyed by (connection, model, variant, external id).
CREATE SCHEMA records;

CREATE TYPE records.last_action AS ENUM ('ADDED', 'UPDATED', 'DELETED');

CREATE TABLE records.records (
    connection_id   BIGINT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    model           TEXT NOT NULL,
    variant         TEXT NOT NULL DEFAULT 'base',
    external_id     TEXT NOT NULL,
    data            JSONB NOT NULL,
    -- md5 of the payload: a save whose hash did not change writes nothing.
    data_hash       UUID NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at      TIMESTAMPTZ,
    pruned_at       TIMESTAMPTZ,
    last_action     records.last_action NOT NULL DEFAULT 'ADDED',
    -- The transaction that last changed the row. Readers page by (xid, external_id) and only
    -- serve rows below their snapshot's xmin, so a writer that commits late can never land
    -- behind a cursor already handed out.
    xid             xid8 NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (connection_id, model, variant, external_id)
);
CREATE INDEX records_paging_idx ON records.records (connection_id, model, variant, xid, external_id);

-- Ids a full sync run has seen, appended per batch; at the end of a successful run, records
-- not seen are soft-deleted. Unlogged: a crash fails the run, and a failed run deletes nothing.
CREATE UNLOGGED TABLE records.run_seen (
    run_id          UUID NOT NULL,
    model           TEXT NOT NULL,
    variant         TEXT NOT NULL,
    external_id     TEXT NOT NULL
);
CREATE INDEX run_seen_run_idx ON records.run_seen (run_id);
