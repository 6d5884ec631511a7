-- agentstore schema, version 5.
--
-- This file is the fresh schema: a new database gets exactly this, then
-- `PRAGMA user_version = 5` and our `PRAGMA application_id`. Older files are moved
-- forward by the steps in src/store/migrate.rs. Times are integer microseconds since
-- the Unix epoch (UTC). Every table is STRICT.

-- One row per agent: its identity and its memory settings (so the running agent and
-- the admin CLI apply the same limits). Written rarely; the counters that change on
-- every write are in memory_counters.
CREATE TABLE agents (
    id                   INTEGER PRIMARY KEY,
    name                 TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
    created_at           INTEGER NOT NULL,
    -- memory settings (defaults as in the original design)
    max_memory_mb        REAL    NOT NULL DEFAULT 10.0 CHECK (max_memory_mb > 0),
    max_entries          INTEGER NOT NULL DEFAULT 1000 CHECK (max_entries > 0),
    cleanup_interval     INTEGER NOT NULL DEFAULT 100  CHECK (cleanup_interval >= 0),
    keep_fraction        REAL    NOT NULL DEFAULT 0.7  CHECK (keep_fraction >= 0 AND keep_fraction <= 1),
    importance_threshold REAL    NOT NULL DEFAULT 0.5  CHECK (importance_threshold >= 0 AND importance_threshold <= 1),
    importance_weight    REAL    NOT NULL DEFAULT 0.7  CHECK (importance_weight >= 0),
    recency_weight       REAL    NOT NULL DEFAULT 0.3  CHECK (recency_weight >= 0),
    low_water            REAL    NOT NULL DEFAULT 0.8  CHECK (low_water >= 0 AND low_water <= 1),
    -- the tool cache scope this agent reads and writes; NULL means its own name
    tool_scope           TEXT    CHECK (tool_scope IS NULL OR length(tool_scope) BETWEEN 1 AND 200),
    -- the response time target in seconds, tuned by optimize_performance()
    target_response_time REAL    NOT NULL DEFAULT 2.0  CHECK (target_response_time > 0),
    -- the weight of relevance to the query in a context built for one (0..1 per query)
    relevance_weight     REAL    NOT NULL DEFAULT 1.0  CHECK (relevance_weight >= 0)
) STRICT;

-- One narrow row per agent with the counters that change on every write. Kept apart
-- from the settings because a trigger rewrites the whole row for every entry added or
-- deleted: a 5-column row instead of the 14-column agents row cut a 30,000-row
-- cleanup by 13% of its instructions.
CREATE TABLE memory_counters (
    agent_id        INTEGER PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    -- messages ever added; drives the cleanup interval and numbers the entries
    message_count   INTEGER NOT NULL DEFAULT 0,
    -- kept by the memory_entries triggers, so stats and budget checks never sum a table
    entries         INTEGER NOT NULL DEFAULT 0,
    bytes           INTEGER NOT NULL DEFAULT 0,
    importance_sum  REAL    NOT NULL DEFAULT 0.0
) STRICT;

CREATE TRIGGER agents_counters AFTER INSERT ON agents BEGIN
    INSERT INTO memory_counters (agent_id) VALUES (NEW.id);
END;

-- One row per memory entry. The table is clustered on the cleanup order
-- (agent, importance, created, id): a cleanup removes a contiguous run of leaf pages
-- instead of touching a row on every page, and the context walk reads the most
-- important entries of an agent from adjacent pages. `id` is the agent's message
-- number (memory_counters.message_count when the entry was added), unique per agent.
-- `role` says who said it; `doc` numbers the entry across agents for the search
-- index (agent_id * 2^40 + id: an agent's entries are one range of it, so a search
-- of one agent is a rowid range of the index). The last two columns were added by
-- schema 4, hence their place.
CREATE TABLE memory_entries (
    agent_id    INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE
                        DEFERRABLE INITIALLY DEFERRED,
    importance  REAL    NOT NULL CHECK (importance >= 0.0 AND importance <= 1.0),
    created_at  INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
    content     TEXT    NOT NULL,
    role        TEXT    NOT NULL DEFAULT 'note'
                        CHECK (role IN ('user', 'assistant', 'system', 'tool', 'note')),
    doc         INTEGER GENERATED ALWAYS AS (agent_id * 1099511627776 + id) VIRTUAL,
    PRIMARY KEY (agent_id, importance, created_at, id)
) STRICT, WITHOUT ROWID;

-- Serves: dropping the oldest entries beyond max_entries, oldest/newest for stats and
-- recency, `memory list --order time`, and prune --older-than.
CREATE INDEX memory_entries_by_time ON memory_entries (agent_id, created_at, id);

-- Serves: one entry by id (`memory get`, `rate`, `forget`) and the search index's
-- reads of the entries it matched (snippets).
CREATE UNIQUE INDEX memory_entries_by_doc ON memory_entries (doc);

-- The full-text index of memory: FTS5 over memory_entries (external content: the
-- text is stored once, in memory_entries), its rowid the entry's `doc`. Unicode
-- words, case- and diacritics-insensitive. Kept by the triggers below in the
-- transaction of every insert and delete, cleanups, prunes and imports included.
CREATE VIRTUAL TABLE memory_search USING fts5(
    content, content = 'memory_entries', content_rowid = 'doc',
    tokenize = 'unicode61 remove_diacritics 2'
);

-- The search index's two queues, which make its upkeep a few set statements per
-- transaction instead of work per row (FTS5 flushes its pending terms into a new
-- segment at every statement boundary of a trigger, which made a 3,000-row cleanup
-- 8x slower). `memory_unindexed`: entries added but not yet in memory_search;
-- `memory_deindex`: entries deleted while in it, with the text FTS5 needs to take
-- them out. Both are written by the triggers below and emptied into memory_search
-- in the same transaction: at the end of every write that deleted an entry, when 64
-- entries wait, and before anything reads the index (search, a context for a query,
-- forget, check). So memory_search plus memory_unindexed is always exactly the
-- entries, and a search never sees a stale index.
CREATE TABLE memory_unindexed (doc INTEGER PRIMARY KEY) STRICT;
CREATE TABLE memory_deindex (doc INTEGER PRIMARY KEY, content TEXT NOT NULL) STRICT;

-- The per-agent counters and the search index's queues. SQLite has no statement-level
-- triggers, so these run once per row; each counter update is a primary-key update
-- of one small row. The importance sum is reset to exactly 0 with the last entry, so
-- float drift cannot outlive an empty memory.
CREATE TRIGGER memory_entries_count_insert AFTER INSERT ON memory_entries BEGIN
    UPDATE memory_counters
       SET entries        = entries + 1,
           bytes          = bytes + NEW.size_bytes,
           importance_sum = importance_sum + NEW.importance
     WHERE agent_id = NEW.agent_id;
    INSERT INTO memory_unindexed (doc) VALUES (NEW.doc);
END;

CREATE TRIGGER memory_entries_count_delete AFTER DELETE ON memory_entries BEGIN
    UPDATE memory_counters
       SET entries        = entries - 1,
           bytes          = bytes - OLD.size_bytes,
           importance_sum = CASE WHEN entries = 1 THEN 0.0
                                 ELSE importance_sum - OLD.importance END
     WHERE agent_id = OLD.agent_id;
    INSERT INTO memory_deindex (doc, content) SELECT OLD.doc, OLD.content
     WHERE NOT EXISTS (SELECT 1 FROM memory_unindexed WHERE doc = OLD.doc);
    DELETE FROM memory_unindexed WHERE doc = OLD.doc;
END;

-- Entries are never updated in place (a new importance is a delete and an insert
-- with the same id and time); refuse it so the counters and the index cannot drift.
CREATE TRIGGER memory_entries_no_update BEFORE UPDATE ON memory_entries BEGIN
    SELECT RAISE(ABORT, 'memory entries are immutable; delete and add instead');
END;

-- One row per agent: the original design's get_memory_stats(), in SQL. Reads the
-- agent's two rows and two ends of memory_entries_by_time, so it costs the same at
-- any size.
CREATE VIEW memory_stats AS
SELECT a.name                                                   AS agent,
       a.id                                                     AS agent_id,
       c.entries                                                AS total_entries,
       c.bytes                                                  AS total_bytes,
       c.bytes / 1048576.0                                      AS total_memory_mb,
       CASE WHEN c.entries > 0 THEN c.importance_sum / c.entries END AS avg_importance_score,
       c.bytes * 100.0 / (a.max_memory_mb * 1048576.0)          AS memory_utilization_pct,
       (SELECT min(created_at) FROM memory_entries m WHERE m.agent_id = a.id) AS oldest_created_at,
       (SELECT max(created_at) FROM memory_entries m WHERE m.agent_id = a.id) AS newest_created_at,
       c.message_count                                          AS message_count,
       a.max_entries                                            AS max_entries,
       a.max_memory_mb                                          AS max_memory_mb
  FROM agents a JOIN memory_counters c ON c.agent_id = a.id;

-- One row per agent and role with entries: how much of the memory each speaker holds.
-- A scan of the agent's entries, unlike memory_stats.
CREATE VIEW memory_by_role AS
SELECT a.name              AS agent,
       a.id                AS agent_id,
       m.role              AS role,
       count(*)            AS entries,
       sum(m.size_bytes)   AS bytes,
       avg(m.importance)   AS avg_importance
  FROM memory_entries m JOIN agents a ON a.id = m.agent_id
 GROUP BY a.id, m.role;

-- A `memory prune` in progress, one row per agent: the rule as the CLI spells it, the
-- last entry it removes (`importance` NULL: in time order (created_at, id), otherwise
-- in cleanup order (importance, created_at, id)) and the message number when it
-- started (later entries are kept). Written with the prune's first batch and deleted
-- with its last; a row left by a killed prune is finished by the same prune run again.
CREATE TABLE memory_prunes (
    agent_id    INTEGER PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    rule        TEXT    NOT NULL,
    importance  REAL,
    created_at  INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    max_id      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL
) STRICT;

-- One row per cached tool result. `key` is blake3 over a key-format version, the
-- scope, the tool name and the canonical JSON of the params (src/store/tool_cache.rs),
-- so a hit is one primary-key search. Rows belong to a scope (by default an agent's
-- name), not to an agent, so agents configured with one scope share results.
CREATE TABLE tool_cache (
    key         BLOB    NOT NULL PRIMARY KEY CHECK (length(key) = 32),
    scope       TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    params      TEXT    NOT NULL,
    result      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Serves: removing expired rows in bounded batches (the oldest expiry first) and
-- `tools cache purge --expired`.
CREATE INDEX tool_cache_by_expiry ON tool_cache (expires_at);

-- Serves: `tools cache list --agent/--tool`, purges by scope or tool, and the
-- cache_size of an agent's tool stats (a count over the scope's range).
CREATE INDEX tool_cache_by_scope ON tool_cache (scope, tool, created_at);

-- Tool call counters per agent and tool. The running agent adds to them in batches
-- (an upsert of deltas, at least once a second while busy and on shutdown), so a hit
-- never writes and several processes never overwrite each other's counts.
CREATE TABLE tool_counters (
    agent_id     INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tool         TEXT    NOT NULL,
    total_calls  INTEGER NOT NULL DEFAULT 0 CHECK (total_calls >= 0),
    cache_hits   INTEGER NOT NULL DEFAULT 0 CHECK (cache_hits >= 0),
    errors       INTEGER NOT NULL DEFAULT 0 CHECK (errors >= 0),
    -- seconds spent in calls (hits included), as the original's total_time
    total_time   REAL    NOT NULL DEFAULT 0.0 CHECK (total_time >= 0),
    PRIMARY KEY (agent_id, tool)
) STRICT, WITHOUT ROWID;

-- One row per agent and tool: the original design's per-tool execution stats, with
-- errors and the hit rate added.
CREATE VIEW tool_stats AS
SELECT a.name                                                   AS agent,
       c.agent_id                                               AS agent_id,
       c.tool                                                   AS tool,
       c.total_calls                                            AS total_calls,
       c.cache_hits                                             AS cache_hits,
       c.errors                                                 AS errors,
       c.total_time                                             AS total_time,
       CASE WHEN c.total_calls > 0 THEN c.total_time / c.total_calls ELSE 0.0 END AS avg_time,
       CASE WHEN c.total_calls > 0 THEN c.cache_hits * 100.0 / c.total_calls ELSE 0.0 END
                                                                AS cache_hit_rate_pct
  FROM tool_counters c JOIN agents a ON a.id = c.agent_id;

-- One row per agent and cached message. The exact lookup is the UNIQUE index on
-- (agent_id, message_hash), message_hash being blake3 of the message as given (case
-- sensitive, as the original). `word_count` is the number of distinct lower-cased
-- words, which the fuzzy lookup's length bounds use. `id` grows with every insert:
-- among equally similar messages the smallest id (the earliest cached) wins.
-- `indexed` says whether its words are in response_words yet (see below).
CREATE TABLE response_cache (
    id            INTEGER PRIMARY KEY,
    agent_id      INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    message_hash  BLOB    NOT NULL CHECK (length(message_hash) = 32),
    message       TEXT    NOT NULL,
    response      TEXT    NOT NULL,
    word_count    INTEGER NOT NULL CHECK (word_count >= 0),
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER NOT NULL,
    hits          INTEGER NOT NULL DEFAULT 0 CHECK (hits >= 0),
    indexed       INTEGER NOT NULL DEFAULT 0 CHECK (indexed IN (0, 1)),
    UNIQUE (agent_id, message_hash)
) STRICT;

-- The rows not yet in the word index (see response_words), which a fuzzy lookup
-- reads directly. Stays small: at most 128 per agent.
CREATE INDEX response_cache_unindexed ON response_cache (agent_id, id) WHERE indexed = 0;

-- Serves: the size cap (keep the most recently used), `responses list --order
-- recent`, `responses purge --keep`.
CREATE INDEX response_cache_by_use ON response_cache (agent_id, last_used_at, id);

-- The inverted word index of the fuzzy lookup: one row per distinct word of each
-- cached message, clustered on (agent, word, word_count) so that a lookup reads, for
-- each word of the query, only the postings of messages whose length can reach the
-- threshold. Written and deleted only by src/store/response_cache.rs (no foreign
-- key: a cascade would need a second index on response_id).
--
-- A new message's ~25 postings land on ~25 different pages, which made a store cost
-- 270 µs at 100,000 cached messages (WAL writes of every dirty page). So a store only
-- inserts the row (`indexed = 0`, ~40 µs); its postings are added in batches: by the
-- agent's periodic flush, by a bulk store, and by a store that finds 128 rows of its
-- agent waiting. Until then a fuzzy lookup reads the waiting rows directly, so
-- answers never depend on whether a row is indexed yet.
CREATE TABLE response_words (
    agent_id     INTEGER NOT NULL,
    word         TEXT    NOT NULL,
    word_count   INTEGER NOT NULL,
    response_id  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, word, word_count, response_id)
) STRICT, WITHOUT ROWID;

-- One row per answered message (and per generation error). Written in batches.
CREATE TABLE response_log (
    id        INTEGER PRIMARY KEY,
    agent_id  INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    at        INTEGER NOT NULL,
    duration  REAL    NOT NULL CHECK (duration >= 0),
    bucket    INTEGER NOT NULL,
    outcome   TEXT    NOT NULL
              CHECK (outcome IN ('exact', 'fuzzy', 'generated', 'fallback', 'error'))
) STRICT;

-- Serves: the log retention (oldest rows of an agent first) and recent_responses.
CREATE INDEX response_log_by_agent ON response_log (agent_id);

-- Serves: response-time stats; each percentile is a walk inside one duration bucket
-- (from its nearer end), never a sort. `outcome` is in it only so that these
-- queries, which must name the partial index's condition, read no table row.
CREATE INDEX response_log_by_duration ON response_log (agent_id, bucket, duration, outcome)
    WHERE outcome <> 'error';

-- Response counts and total time per agent and duration bucket, kept by triggers on
-- response_log. `bucket` is the top 16 bits of the duration's IEEE 754 pattern (its
-- exponent and 4 mantissa bits: 16 buckets per doubling), which orders like the
-- duration itself; src/store/response_cache.rs computes it. The stats find the bucket
-- holding a rank from these few rows, then walk only inside it: W9 at 100,000
-- logged responses went from 11.6 ms (walking the whole index) to 35 µs.
CREATE TABLE response_time_buckets (
    agent_id    INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    bucket      INTEGER NOT NULL,
    responses   INTEGER NOT NULL CHECK (responses >= 0),
    total_time  REAL    NOT NULL,
    PRIMARY KEY (agent_id, bucket)
) STRICT, WITHOUT ROWID;
CREATE TRIGGER response_log_buckets_insert AFTER INSERT ON response_log
WHEN NEW.outcome <> 'error' BEGIN
    INSERT INTO response_time_buckets (agent_id, bucket, responses, total_time)
    VALUES (NEW.agent_id, NEW.bucket, 1, NEW.duration)
    ON CONFLICT (agent_id, bucket) DO UPDATE
       SET responses = responses + 1, total_time = total_time + excluded.total_time;
END;
CREATE TRIGGER response_log_buckets_delete AFTER DELETE ON response_log
WHEN OLD.outcome <> 'error' BEGIN
    UPDATE response_time_buckets
       SET responses  = responses - 1,
           total_time = CASE WHEN responses = 1 THEN 0.0 ELSE total_time - OLD.duration END
     WHERE agent_id = OLD.agent_id AND bucket = OLD.bucket;
END;
-- Log rows are only inserted and deleted; an update would put the buckets out of step.
CREATE TRIGGER response_log_no_update BEFORE UPDATE ON response_log BEGIN
    SELECT RAISE(ABORT, 'response log rows are immutable; delete and insert instead');
END;

-- One row per agent: responses by outcome, average time, target and achievement.
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
       100.0 * count(l.id) FILTER (WHERE l.outcome <> 'error' AND l.duration < a.target_response_time)
             / nullif(count(l.id) FILTER (WHERE l.outcome <> 'error'), 0)
                                                                 AS target_achievement_rate,
       (SELECT count(*) FROM response_cache c WHERE c.agent_id = a.id) AS cache_entries
  FROM agents a LEFT JOIN response_log l ON l.agent_id = a.id
 GROUP BY a.id;

-- Every logged response, newest first, with a readable time.
CREATE VIEW recent_responses AS
SELECT a.name       AS agent,
       l.id         AS id,
       strftime('%Y-%m-%dT%H:%M:%fZ', l.at / 1000000.0, 'unixepoch') AS at,
       l.at         AS at_micros,
       l.duration   AS duration,
       l.outcome    AS outcome
  FROM response_log l JOIN agents a ON a.id = l.agent_id
 ORDER BY l.id DESC;

-- Calls in progress, fleet-wide: one row per key (a cacheable tool call, or a new
-- message of one agent) whose first caller is running it. Other callers, in any
-- process, wait for its result while the lease holds (the holder renews it), and take
-- it over once it has expired (a holder that died). Rows live for the length of a call.
CREATE TABLE leases (
    key         BLOB    NOT NULL PRIMARY KEY CHECK (length(key) = 32),
    holder      TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
