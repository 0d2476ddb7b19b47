"""Working with the shops' own APIs: the sync and backfill of orders, the webhook subscriptions, and
the Redis state both keep (watermarks, locks, the last run of each store, what `bridge connect` set)."""
