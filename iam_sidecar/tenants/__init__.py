"""Tenant sync: a declarative YAML file made true in Casdoor (plan, apply, prune)."""
