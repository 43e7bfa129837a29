"""Suite-wide test settings.

Hypothesis: no per-example deadline (the suite runs on a shared 2-core machine, where a slow example is load,
not a bug; timeouts are pytest-timeout's job) and failing examples printed as a reproducible blob.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("ecert", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ecert")
