//! Schema creation and migrations. `schema.sql` is the fresh schema; an older file is
//! moved forward one step at a time. Everything runs inside one `BEGIN IMMEDIATE`
//! transaction, so concurrent openers of a new file agree on one schema.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::connection::{APPLICATION_ID, Identity, SCHEMA_VERSION, identify};
use super::stmt::SqlContext;
use crate::error::Result;

/// The fresh schema, embedded from the repository root.
pub const SCHEMA_SQL: &str = include_str!("../../../schema.sql");

/// The steps from each version to the next: `STEPS[v - 1]` moves schema `v` to
/// `v + 1` (index 0 is schema 1 itself, which only `schema.sql` creates). A step is
/// never edited once it has shipped; a test migrates a schema-1 file and compares it
/// with a fresh one.
const STEPS: [&str; SCHEMA_VERSION as usize] = ["", TO_2, TO_3, TO_4, TO_5];

/// Schema 5: leases of calls in progress, for single-flight across processes.
const TO_5: &str = "
CREATE TABLE leases (
    key         BLOB    NOT NULL PRIMARY KEY CHECK (length(key) = 32),
    holder      TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
";

/// Schema 4: who said each memory entry (existing entries become `note`: nothing in a
/// schema-3 file tells the agent's lines from an operator's), the full-text index of
/// memory (built from the entries here) and its triggers, the relevance weight, and
/// the per-role view.
const TO_4: &str = "
ALTER TABLE agents ADD COLUMN relevance_weight REAL NOT NULL DEFAULT 1.0
    CHECK (relevance_weight >= 0);
ALTER TABLE memory_entries ADD COLUMN role TEXT NOT NULL DEFAULT 'note'
    CHECK (role IN ('user', 'assistant', 'system', 'tool', 'note'));
ALTER TABLE memory_entries ADD COLUMN
    doc INTEGER GENERATED ALWAYS AS (agent_id * 1099511627776 + id) VIRTUAL;
CREATE UNIQUE INDEX memory_entries_by_doc ON memory_entries (doc);
CREATE VIRTUAL TABLE memory_search USING fts5(
    content, content = 'memory_entries', content_rowid = 'doc',
    tokenize = 'unicode61 remove_diacritics 2'
);
INSERT INTO memory_search (memory_search) VALUES ('rebuild');
CREATE TABLE memory_unindexed (doc INTEGER PRIMARY KEY) STRICT;
CREATE TABLE memory_deindex (doc INTEGER PRIMARY KEY, content TEXT NOT NULL) STRICT;
DROP TRIGGER memory_entries_count_insert;
CREATE TRIGGER memory_entries_count_insert AFTER INSERT ON memory_entries BEGIN
    UPDATE memory_counters
       SET entries        = entries + 1,
           bytes          = bytes + NEW.size_bytes,
           importance_sum = importance_sum + NEW.importance
     WHERE agent_id = NEW.agent_id;
    INSERT INTO memory_unindexed (doc) VALUES (NEW.doc);
END;
DROP TRIGGER memory_entries_count_delete;
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
CREATE VIEW memory_by_role AS
SELECT a.name              AS agent,
       a.id                AS agent_id,
       m.role              AS role,
       count(*)            AS entries,
       sum(m.size_bytes)   AS bytes,
       avg(m.importance)   AS avg_importance
  FROM memory_entries m JOIN agents a ON a.id = m.agent_id
 GROUP BY a.id, m.role;
";

/// Schema 3: the plans of batched memory prunes, so that a killed prune can be finished.
const TO_3: &str = "
CREATE TABLE memory_prunes (
    agent_id    INTEGER PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
    rule        TEXT    NOT NULL,
    importance  REAL,
    created_at  INTEGER NOT NULL,
    id          INTEGER NOT NULL,
    max_id      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL
) STRICT;
";

/// Schema 2: the tool cache and its counters, the response cache with its word
/// index, the response log, their views, and the agent's tool scope and response time
/// target.
const TO_2: &str = "
ALTER TABLE agents ADD COLUMN tool_scope TEXT
    CHECK (tool_scope IS NULL OR length(tool_scope) BETWEEN 1 AND 200);
ALTER TABLE agents ADD COLUMN target_response_time REAL NOT NULL DEFAULT 2.0
    CHECK (target_response_time > 0);
CREATE TABLE tool_cache (
    key         BLOB    NOT NULL PRIMARY KEY CHECK (length(key) = 32),
    scope       TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    params      TEXT    NOT NULL,
    result      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX tool_cache_by_expiry ON tool_cache (expires_at);
CREATE INDEX tool_cache_by_scope ON tool_cache (scope, tool, created_at);
CREATE TABLE tool_counters (
    agent_id     INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    tool         TEXT    NOT NULL,
    total_calls  INTEGER NOT NULL DEFAULT 0 CHECK (total_calls >= 0),
    cache_hits   INTEGER NOT NULL DEFAULT 0 CHECK (cache_hits >= 0),
    errors       INTEGER NOT NULL DEFAULT 0 CHECK (errors >= 0),
    total_time   REAL    NOT NULL DEFAULT 0.0 CHECK (total_time >= 0),
    PRIMARY KEY (agent_id, tool)
) STRICT, WITHOUT ROWID;
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
CREATE INDEX response_cache_unindexed ON response_cache (agent_id, id) WHERE indexed = 0;
CREATE INDEX response_cache_by_use ON response_cache (agent_id, last_used_at, id);
CREATE TABLE response_words (
    agent_id     INTEGER NOT NULL,
    word         TEXT    NOT NULL,
    word_count   INTEGER NOT NULL,
    response_id  INTEGER NOT NULL,
    PRIMARY KEY (agent_id, word, word_count, response_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE response_log (
    id        INTEGER PRIMARY KEY,
    agent_id  INTEGER NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    at        INTEGER NOT NULL,
    duration  REAL    NOT NULL CHECK (duration >= 0),
    bucket    INTEGER NOT NULL,
    outcome   TEXT    NOT NULL
              CHECK (outcome IN ('exact', 'fuzzy', 'generated', 'fallback', 'error'))
) STRICT;
CREATE INDEX response_log_by_agent ON response_log (agent_id);
CREATE INDEX response_log_by_duration ON response_log (agent_id, bucket, duration, outcome)
    WHERE outcome <> 'error';
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
CREATE TRIGGER response_log_no_update BEFORE UPDATE ON response_log BEGIN
    SELECT RAISE(ABORT, 'response log rows are immutable; delete and insert instead');
END;
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
CREATE VIEW recent_responses AS
SELECT a.name       AS agent,
       l.id         AS id,
       strftime('%Y-%m-%dT%H:%M:%fZ', l.at / 1000000.0, 'unixepoch') AS at,
       l.at         AS at_micros,
       l.duration   AS duration,
       l.outcome    AS outcome
  FROM response_log l JOIN agents a ON a.id = l.agent_id
 ORDER BY l.id DESC;
";

/// Brings the file to [`SCHEMA_VERSION`]: applies the fresh schema to an empty file, or
/// runs the steps from its version. Re-reads the marks under the write lock, since
/// another process may have done it first.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .sql("BEGIN IMMEDIATE")?;
    match identify(&tx, path)? {
        Identity::Empty => {
            tx.execute_batch(SCHEMA_SQL).sql("schema.sql")?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .sql("PRAGMA application_id")?;
        }
        Identity::Ours { version } => {
            for (to, step) in STEPS.iter().enumerate().skip(version as usize) {
                tx.execute_batch(step)
                    .sql(&format!("migration to schema {}", to + 1))?;
            }
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .sql("PRAGMA user_version")?;
    tx.commit().sql("COMMIT")
}
