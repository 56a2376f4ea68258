-- Every change of an agent's availability (pause, log out, auto-pause after missed rings, back),
-- who made it and when: the audit trail from which time per state can be counted.
CREATE TABLE agent_states (
    agent TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    node TEXT
);

CREATE INDEX agent_states_agent_at ON agent_states (agent, at_ms);
