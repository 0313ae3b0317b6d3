"""Judgements about a valid spec: GPU fit, cost and the policy rules."""
