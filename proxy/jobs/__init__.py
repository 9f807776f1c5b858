"""Scheduled jobs off the request path, run by one leader among the proxy replicas."""
