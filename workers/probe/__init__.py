"""``bridge check <store> --live``: what a Loyalty.lt API really does, found out on its staging API
before the first real order, and kept for the workers.

:mod:`workers.probe.observed` holds what a probe saw, per API URL, in Redis (the workers read it);
:mod:`workers.probe.steps` runs the probe itself, through the workers' own award and refund code.
"""

# The references of probe orders ("PROBE-" and the UTC time to the millisecond): the store's own
# (reconcile counts them as its orders, whatever the store's reference_format).
PROBE_REFERENCE = r"PROBE-\d{17}"
