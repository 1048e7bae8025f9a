"""Domain logic: environments, reconciler, secrets, auth. Knows nothing of HTTP."""
