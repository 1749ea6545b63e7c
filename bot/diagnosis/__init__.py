"""Diagnosis: facts about a tenant's Fortnox connection -> checks -> one cause -> steps."""
