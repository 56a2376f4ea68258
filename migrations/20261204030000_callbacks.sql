-- Queued callbacks: each dial of a resident who asked to be called back is a call record of
-- its own, linked to the call in which they asked (outcome callback_requested) by its Call-ID.
ALTER TABLE calls ADD COLUMN callback_of TEXT;

CREATE INDEX calls_callback_of ON calls (callback_of);
