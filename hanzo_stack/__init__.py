"""hanzo_stack."""
