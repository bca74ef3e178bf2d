"""The operator saga dashboard: an aiohttp web page over the saga hub's read store
(list, timeline, live updates by server-sent events), operator actions sent as
saga-hub commands, and the dead-letter view with re-drive. It decides nothing
about a saga itself: every change goes through the saga hub."""
