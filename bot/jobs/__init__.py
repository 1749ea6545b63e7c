"""Durable background work: the store's job table, worked by an asyncio loop in every replica."""
