-- agentstore schema for PostgreSQL, version 6: the same tables, constraints, views
-- and view columns as schema.sql (SQLite, version 5), in PostgreSQL's types; the
-- functions of the hot writes are in schema-postgres-functions.sql, applied after this
-- file (version 6 is this file's version 5 and those functions).
--
-- Types: times are `bigint` microseconds since the Unix epoch (UTC), as in SQLite,
-- so exports compare byte for byte; floats are `double precision` (`real` is 4 bytes
-- here); keys and hashes are `bytea`. Text cannot hold a NUL byte in PostgreSQL: the
-- engine refuses such content before writing (SQLite stores it).
--
-- Counters are kept by statement-level triggers with transition tables: a cleanup of
-- 30,000 entries updates each agent's counter row once, not 30,000 times.

CREATE TABLE agentstore_schema (
    application text    NOT NULL CHECK (application = 'agentstore'),
    version     integer NOT NULL CHECK (version > 0)
);
INSERT INTO agentstore_schema (application, version) VALUES ('agentstore', 6);

CREATE TABLE agents (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name                 text    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    created_at           bigint  NOT NULL,
    max_memory_mb        double precision NOT NULL DEFAULT 10.0 CHECK (max_memory_mb > 0),
    max_entries          bigint  NOT NULL DEFAULT 1000 CHECK (max_entries > 0),
    cleanup_interval     bigint  NOT NULL DEFAULT 100  CHECK (cleanup_interval >= 0),
    keep_fraction        double precision NOT NULL DEFAULT 0.7 CHECK (keep_fraction >= 0 AND keep_fraction <= 1),
    importance_threshold double precision NOT NULL DEFAULT 0.5 CHECK (importance_threshold >= 0 AND importance_threshold <= 1),
    importance_weight    double precision NOT NULL DEFAULT 0.7 CHECK (importance_weight >= 0),
    recency_weight       double precision NOT NULL DEFAULT 0.3 CHECK (recency_weight >= 0),
    low_water            double precision NOT NULL DEFAULT 0.8 CHECK (low_water >= 0 AND low_water <= 1),
    tool_scope           text    CHECK (tool_scope IS NULL OR length(tool_scope) BETWEEN 1 AND 200),
    target_response_time double precision NOT NULL DEFAULT 2.0 CHECK (target_response_time > 0),
    relevance_weight     double precision NOT NULL DEFAULT 1.0 CHECK (relevance_weight >= 0)
);

CREATE TABLE memory_counters (
    agent_id        bigint PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    message_count   bigint NOT NULL DEFAULT 0,
    entries         bigint NOT NULL DEFAULT 0,
    bytes           bigint NOT NULL DEFAULT 0,
    importance_sum  double precision NOT NULL DEFAULT 0.0
);

CREATE FUNCTION agents_counters() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO memory_counters (agent_id) SELECT id FROM new_agents;
    RETURN NULL;
END $$;
CREATE TRIGGER agents_counters AFTER INSERT ON agents
    REFERENCING NEW TABLE AS new_agents FOR EACH STATEMENT EXECUTE FUNCTION agents_counters();

-- One row per memory entry; `search` is its full-text vector ('simple' configuration:
-- every word, lower-cased, no stemming or stop words), kept by PostgreSQL itself.
CREATE TABLE memory_entries (
    agent_id    bigint  NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    importance  double precision NOT NULL CHECK (importance >= 0.0 AND importance <= 1.0),
    created_at  bigint  NOT NULL,
    id          bigint  NOT NULL CHECK (id > 0),
    size_bytes  bigint  NOT NULL CHECK (size_bytes >= 0),
    content     text    NOT NULL,
    role        text    NOT NULL DEFAULT 'note'
                        CHECK (role IN ('user', 'assistant', 'system', 'tool', 'note')),
    search      tsvector GENERATED ALWAYS AS (to_tsvector('simple', content)) STORED,
    PRIMARY KEY (agent_id, importance, created_at, id),
    UNIQUE (agent_id, id)
);
CREATE INDEX memory_entries_by_time ON memory_entries (agent_id, created_at, id);
CREATE INDEX memory_entries_search ON memory_entries USING gin (search);

CREATE FUNCTION memory_entries_count_insert() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE memory_counters c
       SET entries = c.entries + n.entries, bytes = c.bytes + n.bytes,
           importance_sum = c.importance_sum + n.importance_sum
      FROM (SELECT agent_id, count(*) AS entries, sum(size_bytes) AS bytes,
                   sum(importance) AS importance_sum
              FROM new_entries GROUP BY agent_id) n
     WHERE c.agent_id = n.agent_id;
    RETURN NULL;
END $$;
CREATE TRIGGER memory_entries_count_insert AFTER INSERT ON memory_entries
    REFERENCING NEW TABLE AS new_entries FOR EACH STATEMENT
    EXECUTE FUNCTION memory_entries_count_insert();

-- The importance sum is reset to exactly 0 with the last entry, as on SQLite.
CREATE FUNCTION memory_entries_count_delete() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE memory_counters c
       SET entries = c.entries - o.entries, bytes = c.bytes - o.bytes,
           importance_sum = CASE WHEN c.entries = o.entries THEN 0.0
                                 ELSE c.importance_sum - o.importance_sum END
      FROM (SELECT agent_id, count(*) AS entries, sum(size_bytes) AS bytes,
                   sum(importance) AS importance_sum
              FROM old_entries GROUP BY agent_id) o
     WHERE c.agent_id = o.agent_id;
    RETURN NULL;
END $$;
CREATE TRIGGER memory_entries_count_delete AFTER DELETE ON memory_entries
    REFERENCING OLD TABLE AS old_entries FOR EACH STATEMENT
    EXECUTE FUNCTION memory_entries_count_delete();

CREATE FUNCTION memory_entries_no_update() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'memory entries are immutable; delete and add instead';
END $$;
CREATE TRIGGER memory_entries_no_update BEFORE UPDATE ON memory_entries
    FOR EACH ROW EXECUTE FUNCTION memory_entries_no_update();

CREATE VIEW memory_stats AS
SELECT a.name                                                   AS agent,
       a.id                                                     AS agent_id,
       c.entries                                                AS total_entries,
       c.bytes                                                  AS total_bytes,
       c.bytes / 1048576.0::double precision                    AS total_memory_mb,
       CASE WHEN c.entries > 0 THEN c.importance_sum / c.entries END AS avg_importance_score,
       c.bytes * 100.0::double precision / (a.max_memory_mb * 1048576.0) AS memory_utilization_pct,
       (SELECT min(created_at) FROM memory_entries m WHERE m.agent_id = a.id) AS oldest_created_at,
       (SELECT max(created_at) FROM memory_entries m WHERE m.agent_id = a.id) AS newest_created_at,
       c.message_count                                          AS message_count,
       a.max_entries                                            AS max_entries,
       a.max_memory_mb                                          AS max_memory_mb
  FROM agents a JOIN memory_counters c ON c.agent_id = a.id;

CREATE VIEW memory_by_role AS
SELECT a.name              AS agent,
       a.id                AS agent_id,
       m.role              AS role,
       count(*)            AS entries,
       sum(m.size_bytes)   AS bytes,
       avg(m.importance)   AS avg_importance
  FROM memory_entries m JOIN agents a ON a.id = m.agent_id
 GROUP BY a.id, m.role;

CREATE TABLE memory_prunes (
    agent_id    bigint PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    rule        text   NOT NULL,
    importance  double precision,
    created_at  bigint NOT NULL,
    id          bigint NOT NULL,
    max_id      bigint NOT NULL,
    started_at  bigint NOT NULL
);

CREATE TABLE tool_cache (
    key         bytea  NOT NULL PRIMARY KEY CHECK (length(key) = 32),
    scope       text   NOT NULL,
    tool        text   NOT NULL,
    params      text   NOT NULL,
    result      text   NOT NULL,
    created_at  bigint NOT NULL,
    expires_at  bigint NOT NULL
);
CREATE INDEX tool_cache_by_expiry ON tool_cache (expires_at);
CREATE INDEX tool_cache_by_scope ON tool_cache (scope, tool, created_at);

CREATE TABLE tool_counters (
    agent_id     bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tool         text   NOT NULL,
    total_calls  bigint NOT NULL DEFAULT 0 CHECK (total_calls >= 0),
    cache_hits   bigint NOT NULL DEFAULT 0 CHECK (cache_hits >= 0),
    errors       bigint NOT NULL DEFAULT 0 CHECK (errors >= 0),
    total_time   double precision NOT NULL DEFAULT 0.0 CHECK (total_time >= 0),
    PRIMARY KEY (agent_id, tool)
);

CREATE VIEW tool_stats AS
SELECT a.name                                                   AS agent,
       c.agent_id                                               AS agent_id,
       c.tool                                                   AS tool,
       c.total_calls                                            AS total_calls,
       c.cache_hits                                             AS cache_hits,
       c.errors                                                 AS errors,
       c.total_time                                             AS total_time,
       CASE WHEN c.total_calls > 0 THEN c.total_time / c.total_calls ELSE 0.0 END AS avg_time,
       CASE WHEN c.total_calls > 0 THEN c.cache_hits * 100.0::double precision / c.total_calls
            ELSE 0.0 END                                        AS cache_hit_rate_pct
  FROM tool_counters c JOIN agents a ON a.id = c.agent_id;

CREATE TABLE response_cache (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id      bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    message_hash  bytea  NOT NULL CHECK (length(message_hash) = 32),
    message       text   NOT NULL,
    response      text   NOT NULL,
    word_count    bigint NOT NULL CHECK (word_count >= 0),
    created_at    bigint NOT NULL,
    last_used_at  bigint NOT NULL,
    hits          bigint NOT NULL DEFAULT 0 CHECK (hits >= 0),
    indexed       boolean NOT NULL DEFAULT false,
    UNIQUE (agent_id, message_hash)
);
CREATE INDEX response_cache_unindexed ON response_cache (agent_id, id) WHERE NOT indexed;
CREATE INDEX response_cache_by_use ON response_cache (agent_id, last_used_at, id);

CREATE TABLE response_words (
    agent_id     bigint NOT NULL,
    word         text   NOT NULL,
    word_count   bigint NOT NULL,
    response_id  bigint NOT NULL,
    PRIMARY KEY (agent_id, word, word_count, response_id)
);

CREATE TABLE response_log (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id  bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    at        bigint NOT NULL,
    duration  double precision NOT NULL CHECK (duration >= 0),
    bucket    bigint NOT NULL,
    outcome   text   NOT NULL
              CHECK (outcome IN ('exact', 'fuzzy', 'generated', 'fallback', 'error'))
);
CREATE INDEX response_log_by_agent ON response_log (agent_id);
CREATE INDEX response_log_by_duration ON response_log (agent_id, bucket, duration, outcome)
    WHERE outcome <> 'error';

CREATE TABLE response_time_buckets (
    agent_id    bigint NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    bucket      bigint NOT NULL,
    responses   bigint NOT NULL CHECK (responses >= 0),
    total_time  double precision NOT NULL,
    PRIMARY KEY (agent_id, bucket)
);

CREATE FUNCTION response_log_buckets_insert() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO response_time_buckets AS b (agent_id, bucket, responses, total_time)
    SELECT agent_id, bucket, count(*), sum(duration) FROM new_rows
     WHERE outcome <> 'error' GROUP BY agent_id, bucket
    ON CONFLICT (agent_id, bucket) DO UPDATE
       SET responses = b.responses + excluded.responses,
           total_time = b.total_time + excluded.total_time;
    RETURN NULL;
END $$;
CREATE TRIGGER response_log_buckets_insert AFTER INSERT ON response_log
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION response_log_buckets_insert();

CREATE FUNCTION response_log_buckets_delete() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE response_time_buckets b
       SET responses = b.responses - o.responses,
           total_time = CASE WHEN b.responses = o.responses THEN 0.0
                             ELSE b.total_time - o.total_time END
      FROM (SELECT agent_id, bucket, count(*) AS responses, sum(duration) AS total_time
              FROM old_rows WHERE outcome <> 'error' GROUP BY agent_id, bucket) o
     WHERE b.agent_id = o.agent_id AND b.bucket = o.bucket;
    RETURN NULL;
END $$;
CREATE TRIGGER response_log_buckets_delete AFTER DELETE ON response_log
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION response_log_buckets_delete();

CREATE FUNCTION response_log_no_update() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'response log rows are immutable; delete and insert instead';
END $$;
CREATE TRIGGER response_log_no_update BEFORE UPDATE ON response_log
    FOR EACH ROW EXECUTE FUNCTION response_log_no_update();

CREATE VIEW response_stats AS
SELECT a.name                                                    AS agent,
       a.id                                                      AS agent_id,
       count(l.id)                                               AS total_logged,
       count(l.id) FILTER (WHERE l.outcome = 'exact')            AS exact,
       count(l.id) FILTER (WHERE l.outcome = 'fuzzy')            AS fuzzy,
       count(l.id) FILTER (WHERE l.outcome = 'generated')        AS generated,
       count(l.id) FILTER (WHERE l.outcome = 'fallback')         AS fallback,
       count(l.id) FILTER (WHERE l.outcome = 'error')            AS errors,
       avg(l.duration) FILTER (WHERE l.outcome <> 'error')       AS avg_response_time,
       a.target_response_time                                    AS target_response_time,
       count(l.id) FILTER (WHERE l.outcome <> 'error' AND l.duration < a.target_response_time)
                                                                 AS responses_under_target,
       100.0::double precision * count(l.id) FILTER (WHERE l.outcome <> 'error' AND l.duration < a.target_response_time)
             / nullif(count(l.id) FILTER (WHERE l.outcome <> 'error'), 0)
                                                                 AS target_achievement_rate,
       (SELECT count(*) FROM response_cache c WHERE c.agent_id = a.id) AS cache_entries
  FROM agents a LEFT JOIN response_log l ON l.agent_id = a.id
 GROUP BY a.id;

CREATE VIEW recent_responses AS
SELECT a.name       AS agent,
       l.id         AS id,
       to_char(to_timestamp(l.at / 1000000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at,
       l.at         AS at_micros,
       l.duration   AS duration,
       l.outcome    AS outcome
  FROM response_log l JOIN agents a ON a.id = l.agent_id
 ORDER BY l.id DESC;

-- Calls in progress, fleet-wide (see schema.sql).
CREATE TABLE leases (
    key         bytea  NOT NULL PRIMARY KEY CHECK (length(key) = 32),
    holder      text   NOT NULL,
    expires_at  bigint NOT NULL
);
