"""WooCommerce: its webhooks (:mod:`.webhooks`, the adapter the intake and the jobs use)."""
