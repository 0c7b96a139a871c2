-- Free-text search over logs (the dashboard's and the logs API's `q`) matches substrings with
-- ILIKE; trigram indexes let a rare word be found without scanning every message. pg_trgm is
-- a trusted extension (Postgres 13+, RDS included): the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX messages_text_idx ON logs.messages USING gin (message gin_trgm_ops);
CREATE INDEX operations_error_idx ON logs.operations USING gin (error gin_trgm_ops);
