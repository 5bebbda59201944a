"""From the bridge to the marketplace: the outbox, its worker and Standard Webhooks signing."""
