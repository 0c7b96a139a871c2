-- The frontend SDK's sockets held by API Gateway's WebSocket API (deployed on AWS): which
-- connection a `ws_client_id` names, so whichever api instance finishes an OAuth flow can post
-- the outcome to it. A row lives from `$connect` to `$disconnect`; rows whose `$disconnect`
-- never came are swept after API Gateway's two-hour connection limit.
CREATE TABLE auth_socket_connections (
    ws_client_id   TEXT PRIMARY KEY CHECK (length(ws_client_id) BETWEEN 1 AND 128),
    connection_id  TEXT NOT NULL UNIQUE CHECK (length(connection_id) BETWEEN 1 AND 128),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX auth_socket_connections_created_idx ON auth_socket_connections (created_at);
