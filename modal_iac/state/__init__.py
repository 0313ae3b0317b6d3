"""The recorded state and where it is kept: a local file or a Modal Volume, with locks."""
