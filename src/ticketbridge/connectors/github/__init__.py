"""GitHub Issues: the connector and its REST client, and a stateful emulator of the Issues REST API and its
webhooks (`ticketbridge.connectors.github.emulator`) for tests and demos."""
