-- Where a sync's script keeps its place between runs (nango.getCheckpoint / saveCheckpoint).
CREATE TABLE checkpoints (
    connection_id   BIGINT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    function_name   TEXT NOT NULL,
    checkpoint      JSONB NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (connection_id, function_name)
);
