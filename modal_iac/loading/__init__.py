"""Spec files to checked specs: parsing hostile YAML, validating, locating every error."""
