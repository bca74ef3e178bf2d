"""App hub events other parts may depend on, by their Avro names (the contract is
the .avsc files under schemas/app/events)."""

APP_REGISTERED = "poseidon.app.AppRegistered"
APP_SUBSCRIBED = "poseidon.app.AppSubscribed"
APP_RESUBSCRIBED = "poseidon.app.AppResubscribed"
APP_UNSUBSCRIBED = "poseidon.app.AppUnsubscribed"
SUBSCRIPTION_GUARDS_SET = "poseidon.app.SubscriptionGuardsSet"
BOT_CONNECTED = "poseidon.app.BotConnected"
