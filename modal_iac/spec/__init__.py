"""The spec language: the models, their scalar fields, names, settings and schema."""
