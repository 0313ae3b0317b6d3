"""Specs to Modal app source: one context builder per app shape, one escaping path."""
