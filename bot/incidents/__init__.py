"""Incidents: grouping export failures per tenant (and app-wide causes across tenants), lifecycle, audit."""
