-- Call detail records: one row per call (inserted at call start, completed at call end) and the
-- per-call audit trail. Portable SQL: the same file runs on SQLite and PostgreSQL. Times are UTC
-- milliseconds since the Unix epoch (BIGINT) so both backends store and compare them identically.
CREATE TABLE calls (
    call_id            TEXT PRIMARY KEY,
    caller             TEXT,
    trunk              TEXT NOT NULL,
    arrived_ms         BIGINT NOT NULL,
    ivr_answered_ms    BIGINT,
    language_chosen_ms BIGINT,
    group_chosen_ms    BIGINT,
    queue_entered_ms   BIGINT,
    agent_answered_ms  BIGINT,
    ended_ms           BIGINT,
    language           TEXT,
    menu_path          TEXT NOT NULL DEFAULT '',
    dtmf_mode          TEXT,
    enterprise         TEXT,
    agent              TEXT,
    transfer_mode      TEXT,
    outcome            TEXT,
    wait_seconds       DOUBLE PRECISION,
    talk_seconds       DOUBLE PRECISION,
    rtp_packets        BIGINT,
    rtp_lost           BIGINT,
    rtp_jitter_ms      DOUBLE PRECISION
);

CREATE INDEX calls_arrived_ms ON calls (arrived_ms);

CREATE TABLE call_events (
    call_id TEXT NOT NULL,
    seq     BIGINT NOT NULL,
    at_ms   BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (call_id, seq)
);
