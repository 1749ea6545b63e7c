"""Microsoft Teams: the same Cards rendered as Adaptive Cards (one more renderer, no domain code)."""
