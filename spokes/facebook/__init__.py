"""The Facebook Messenger spoke: webhook payloads in (translate.parse_webhook), Send API
calls out (client.FacebookClient, actions.send_reply). Decides no routing."""
