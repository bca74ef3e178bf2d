-- Who answers each conversation (the handoff to people): the bot, nobody yet
-- (awaiting_agent: the agents' queue), or the agent in agent_id.
ALTER TABLE conversations ADD COLUMN handled_by text NOT NULL DEFAULT 'bot'
    CHECK (handled_by IN ('bot', 'awaiting_agent', 'agent'));
ALTER TABLE conversations ADD COLUMN agent_id text NOT NULL DEFAULT '';
CREATE INDEX conversations_handler_inbox ON conversations (tenant_id, handled_by, last_activity_at DESC, conversation_id DESC);
