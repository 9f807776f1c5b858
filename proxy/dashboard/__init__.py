"""The dashboard: one static page that plots the admin API's JSON."""
