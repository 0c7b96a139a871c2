-- The frontend SDK's socket (`nango.auth()`'s ws_client_id) an authorization was started from:
-- the callback tells it the outcome.
ALTER TABLE oauth_sessions
    ADD COLUMN ws_client_id TEXT CHECK (length(ws_client_id) BETWEEN 1 AND 128);
