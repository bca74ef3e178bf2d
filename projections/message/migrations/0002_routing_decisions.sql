-- The routing decision of each inbound message (MessageRouted / MessageRejected):
-- which app and spoke got it, or which rule refused it and why. Empty on outbound
-- messages and on inbound ones recorded without the router.
ALTER TABLE messages
    ADD COLUMN routed_app_id   text NOT NULL DEFAULT '',
    ADD COLUMN routed_spoke    text NOT NULL DEFAULT '',
    ADD COLUMN routing_rule    text NOT NULL DEFAULT '',
    ADD COLUMN routing_reason  text NOT NULL DEFAULT '',
    ADD COLUMN routing_facts   jsonb NOT NULL DEFAULT '{}';
-- "Which messages did rule X refuse?" per tenant, for operators.
CREATE INDEX messages_by_routing_rule ON messages (tenant_id, routing_rule) WHERE routing_rule <> '';
