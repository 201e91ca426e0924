"""``tokenomy validate``: exact checks, accounting identities and stylized facts over seeds."""
