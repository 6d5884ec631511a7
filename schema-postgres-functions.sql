-- agentstore schema for PostgreSQL, version 6: the functions of the hot writes,
-- applied after schema-postgres.sql when a schema is created, and alone by the
-- migration from version 5 (every statement here may run again: CREATE OR REPLACE).
--
-- Why functions: the engine sends unnamed statements, so that a transaction-mode
-- pooler (PgBouncer) works; the server parses and plans an unnamed statement on every
-- call, and for these writes (a few CTEs each) that was most of their time. A call
-- `SELECT * FROM f($1, ...)` is planned in microseconds, and PL/pgSQL keeps the plan
-- of the statement inside per server connection (no session state anyone can see:
-- a plan cache, safe behind a pooler). Each function runs exactly the one statement
-- the engine used to send, after setting the caller's lock timeout for the rest of
-- the call (`set_config(..., true)`, undone when the function returns, because of its
-- `SET search_path` clause), so that no row lock is waited for longer.

-- A lease given up, if this holder still has it.
CREATE OR REPLACE FUNCTION lease_release(p_key bytea, p_holder text, p_lock_timeout text)
RETURNS void LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    DELETE FROM leases WHERE key = p_key AND holder = p_holder;
END $$;

-- An add (or a batch) that takes no retention step: the message counter bumped and the
-- entries inserted with the ids it gives; nothing at all (no row) when a cleanup is
-- due, the cap or the byte budget would be passed, or the ids would run out, and the
-- engine then runs the transaction with the retention steps.
CREATE OR REPLACE FUNCTION memory_add_fast(
    p_agent bigint, p_importance double precision[], p_content text[], p_role text[],
    p_lock_timeout text, p_n bigint, p_bytes bigint, p_max_id bigint, p_now bigint)
RETURNS SETOF bigint LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    RETURN QUERY
    WITH r AS (
        UPDATE memory_counters c SET message_count = c.message_count + p_n
          FROM agents a
         WHERE c.agent_id = p_agent AND a.id = c.agent_id
           AND (a.cleanup_interval <= 0
                OR (c.message_count + p_n) / a.cleanup_interval
                   = c.message_count / a.cleanup_interval)
           AND c.entries + p_n <= a.max_entries
           AND (c.bytes + p_bytes)::float8 <= a.max_memory_mb * 1024::float8 * 1024::float8
           AND c.message_count + p_n <= p_max_id
        RETURNING c.message_count)
    INSERT INTO memory_entries (agent_id, importance, created_at, id, size_bytes, content, role)
    SELECT p_agent, u.i, p_now, r.message_count - p_n + u.n, octet_length(u.x), u.x, u.r
      FROM r, unnest(p_importance, p_content, p_role) WITH ORDINALITY AS u (i, x, r, n)
     ORDER BY u.n
    RETURNING memory_entries.id;
END $$;

-- A tool result stored (replacing the row of its key), after up to `p_batch` other
-- expired rows are removed over the expiry index (rows another writer holds are left
-- for the next store); with `p_holder`, that holder's lease on the key is given up in
-- the same statement (the call that held it has stored its result).
CREATE OR REPLACE FUNCTION tool_cache_put(
    p_key bytea, p_scope text, p_tool text, p_params text, p_result text,
    p_now bigint, p_expires_at bigint, p_lock_timeout text, p_batch bigint,
    p_holder text)
RETURNS void LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    WITH gone AS (
        DELETE FROM tool_cache WHERE key IN (
            SELECT t.key FROM tool_cache t
             WHERE t.expires_at <= p_now AND t.key <> p_key
             ORDER BY t.expires_at LIMIT p_batch FOR UPDATE OF t SKIP LOCKED))
    INSERT INTO tool_cache (key, scope, tool, params, result, created_at, expires_at)
    VALUES (p_key, p_scope, p_tool, p_params, p_result, p_now, p_expires_at)
    ON CONFLICT (key) DO UPDATE SET result = excluded.result,
        created_at = excluded.created_at, expires_at = excluded.expires_at;
    IF p_holder IS NOT NULL THEN
        PERFORM lease_release(p_key, p_holder, p_lock_timeout);
    END IF;
END $$;

-- A response stored with its postings (a message the agent has keeps its row and
-- postings, and gets the new response); the row's id. With `p_holder`, that holder's
-- lease `p_lease` (on answering the message) is given up in the same statement.
CREATE OR REPLACE FUNCTION response_cache_put(
    p_agent bigint, p_hash bytea, p_message text, p_response text, p_word_count bigint,
    p_now bigint, p_lock_timeout text, p_words text[], p_lease bytea, p_holder text)
RETURNS bigint LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    stored bigint;
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    WITH r AS (
        INSERT INTO response_cache (agent_id, message_hash, message, response, word_count,
                                    created_at, last_used_at, indexed)
        VALUES (p_agent, p_hash, p_message, p_response, p_word_count, p_now, p_now, true)
        ON CONFLICT (agent_id, message_hash) DO UPDATE SET
            response = excluded.response, last_used_at = excluded.last_used_at
        RETURNING id, (xmax = 0) AS inserted),
    postings AS (
        INSERT INTO response_words (agent_id, word, word_count, response_id)
        SELECT p_agent, u.w, p_word_count, r.id FROM r, unnest(p_words) AS u (w)
         WHERE r.inserted
        ON CONFLICT DO NOTHING)
    SELECT id INTO stored FROM r;
    IF p_holder IS NOT NULL THEN
        PERFORM lease_release(p_lease, p_holder, p_lock_timeout);
    END IF;
    RETURN stored;
END $$;

-- A lease taken when it is free, expired or already this holder's, after up to 8
-- other expired leases are removed: `took` 1 when taken, else 0 and `held` the
-- holder's expiry as the statement's snapshot saw it (NULL when that snapshot saw no
-- lease: a holder committed after it began).
CREATE OR REPLACE FUNCTION lease_take(
    p_key bytea, p_holder text, p_until bigint, p_now bigint, p_lock_timeout text)
RETURNS TABLE (took bigint, held bigint) LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    RETURN QUERY
    WITH gone AS (
        DELETE FROM leases WHERE key IN (
            SELECT l2.key FROM leases l2
             WHERE l2.expires_at <= p_now AND l2.key <> p_key
             LIMIT 8 FOR UPDATE OF l2 SKIP LOCKED)),
    taken AS (
        INSERT INTO leases AS l (key, holder, expires_at)
        VALUES (p_key, p_holder, p_until)
        ON CONFLICT (key) DO UPDATE SET holder = excluded.holder,
            expires_at = excluded.expires_at
         WHERE l.expires_at <= p_now OR l.holder = excluded.holder
        RETURNING l.holder)
    SELECT (SELECT count(*) FROM taken),
           (SELECT l3.expires_at FROM leases l3 WHERE l3.key = p_key);
END $$;

-- A lease renewed until `p_until` if this holder still has it; whether it did.
CREATE OR REPLACE FUNCTION lease_renew(
    p_key bytea, p_holder text, p_until bigint, p_lock_timeout text)
RETURNS boolean LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM set_config('lock_timeout', p_lock_timeout, true);
    UPDATE leases SET expires_at = p_until WHERE key = p_key AND holder = p_holder;
    RETURN FOUND;
END $$;
