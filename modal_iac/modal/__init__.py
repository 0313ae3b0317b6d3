"""Everything that talks to Modal: the SDK calls, deploys, apply, health gates."""
