"""Billing's entrypoints: the HTTP API (Django REST framework), the order events'
consumer, the command line."""
