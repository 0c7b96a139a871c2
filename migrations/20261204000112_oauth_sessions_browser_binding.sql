-- An OAuth flow belongs to the browser that started it: the digest of the cookie
-- `GET /oauth/connect` set, which the callback must present; and the origin of the page that
-- opened the flow (its Referer), the only one the callback page posts its result to.
ALTER TABLE oauth_sessions
    ADD COLUMN browser_binding_hash BYTEA CHECK (octet_length(browser_binding_hash) = 32),
    ADD COLUMN opener_origin TEXT CHECK (length(opener_origin) BETWEEN 1 AND 300);
