-- Schema version 5: the filter indexes as posting lists (crates/store-pg/src/read.rs;
-- docs/STORAGE.md). Six B-tree indexes of `entries` (time, time per chain, agent, session,
-- event type, tool), each updated once per entry, are replaced by `postings`: for every write
-- batch and every distinct (kind, name, time bucket, chain) among its entries, one row listing
-- those entries' timestamps and seqs. The foreign key from `entries` to `chains` goes too (it
-- cost a lookup of `chains` per entry; a batch only writes entries of chains it has read or made).
--
-- kind: 0 every entry (name ''), 1 agent id, 2 session id, 3 event type, 4 tool name.
-- bucket: ts_ms >> 20 (about 17.5 minutes). ts and seqs: parallel arrays, in seq order.
-- first_seq, last_seq: the row's lowest and highest seq (first_seq makes the key unique, since
-- batches write disjoint seqs; last_seq finds the rows an archived prefix left behind).
CREATE TABLE postings(
    kind      SMALLINT NOT NULL CHECK (kind BETWEEN 0 AND 4),
    name      TEXT COLLATE "C" NOT NULL,
    bucket    BIGINT NOT NULL,
    chain_id  BIGINT NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq  BIGINT NOT NULL,
    ts        BIGINT[] NOT NULL,
    seqs      BIGINT[] NOT NULL,
    PRIMARY KEY (kind, name, bucket, chain_id, first_seq)
);
CREATE INDEX postings_chain ON postings(chain_id, last_seq);
-- Arrays past 2 kB are stored out of line without compression: pglz took 15% of the writing
-- backend's time (docs/PERFORMANCE.md, "PostgreSQL store").
ALTER TABLE postings ALTER COLUMN ts SET STORAGE EXTERNAL,
    ALTER COLUMN seqs SET STORAGE EXTERNAL;

-- What the store already holds, one row per (kind, name, bucket, chain).
INSERT INTO postings
SELECT 0, '', ts_ms >> 20, chain_id, min(seq), max(seq),
       array_agg(ts_ms ORDER BY seq), array_agg(seq ORDER BY seq)
FROM entries GROUP BY chain_id, ts_ms >> 20;
INSERT INTO postings
SELECT 1, agent_id, ts_ms >> 20, chain_id, min(seq), max(seq),
       array_agg(ts_ms ORDER BY seq), array_agg(seq ORDER BY seq)
FROM entries GROUP BY chain_id, agent_id, ts_ms >> 20;
INSERT INTO postings
SELECT 2, session_id, ts_ms >> 20, chain_id, min(seq), max(seq),
       array_agg(ts_ms ORDER BY seq), array_agg(seq ORDER BY seq)
FROM entries GROUP BY chain_id, session_id, ts_ms >> 20;
INSERT INTO postings
SELECT 3, event_type, ts_ms >> 20, chain_id, min(seq), max(seq),
       array_agg(ts_ms ORDER BY seq), array_agg(seq ORDER BY seq)
FROM entries GROUP BY chain_id, event_type, ts_ms >> 20;
INSERT INTO postings
SELECT 4, tool, ts_ms >> 20, chain_id, min(seq), max(seq),
       array_agg(ts_ms ORDER BY seq), array_agg(seq ORDER BY seq)
FROM entries WHERE tool IS NOT NULL GROUP BY chain_id, tool, ts_ms >> 20;

DROP INDEX entries_ts;
DROP INDEX entries_ts_all;
DROP INDEX entries_agent;
DROP INDEX entries_session;
DROP INDEX entries_event;
DROP INDEX entries_tool;
ALTER TABLE entries DROP CONSTRAINT entries_chain_id_fkey;
