"""Serving many photos and many users: the HTTP API, batch jobs (local and Ray),
the dashboard's per-photo analysis, admission control and byte budgets.
"""
