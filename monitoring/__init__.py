"""Monitoring of the service: generated Prometheus rules and dashboard, the textfile exporter."""
