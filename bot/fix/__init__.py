"""Closing the loop: reactivation requests, approvals, consent links, the OAuth callback, verification, replay."""
