-- The node (setting node.name) that wrote each call record, so that a node restarting after a
-- crash closes only its own open records as `interrupted`, never the live calls of another node
-- sharing the database. Rows written before this column existed keep NULL: nobody closes them.
ALTER TABLE calls ADD COLUMN node TEXT;

CREATE INDEX calls_node_open ON calls (node, ended_ms);
