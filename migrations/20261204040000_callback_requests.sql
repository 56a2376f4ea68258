-- Queued callback requests, one row per request (id = the Call-ID of the call in which the
-- resident asked), kept up to date by the node serving it: pending rows survive a restart,
-- and a node claims a row (pending -> dialling, stamped with its node name) before dialling,
-- so two nodes sharing the database never dial one request at once. The number is blanked
-- once the request is over.
CREATE TABLE callbacks (
    id                TEXT PRIMARY KEY,
    group_name        TEXT NOT NULL,
    language          TEXT NOT NULL,
    number            TEXT NOT NULL,
    display           TEXT NOT NULL,
    path              TEXT NOT NULL,
    requested_ms      BIGINT NOT NULL,
    queue_entered_ms  BIGINT NOT NULL,
    attempts          INTEGER NOT NULL,
    state             TEXT NOT NULL,
    node              TEXT,
    updated_ms        BIGINT NOT NULL
);

CREATE INDEX callbacks_state ON callbacks (state);
