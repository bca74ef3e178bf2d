"""Message events other parts may depend on, by their Avro names (the contract is
the .avsc files under schemas/message/events)."""

CONVERSATION_STARTED = "poseidon.message.ConversationStarted"
CONVERSATION_REOPENED = "poseidon.message.ConversationReopened"
CONVERSATION_CLOSED = "poseidon.message.ConversationClosed"
INBOUND_MESSAGE_RECORDED = "poseidon.message.InboundMessageRecorded"
OUTBOUND_MESSAGE_RECORDED = "poseidon.message.OutboundMessageRecorded"
DELIVERY_STATUS_UPDATED = "poseidon.message.DeliveryStatusUpdated"
MESSAGE_ROUTED = "poseidon.message.MessageRouted"
MESSAGE_REJECTED = "poseidon.message.MessageRejected"
AGENT_REQUESTED = "poseidon.message.AgentRequested"
CONVERSATION_TAKEN = "poseidon.message.ConversationTaken"
CONVERSATION_HANDED_BACK = "poseidon.message.ConversationHandedBack"
