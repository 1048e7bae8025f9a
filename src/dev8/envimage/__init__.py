"""Code that runs inside environment containers (stdlib only)."""
