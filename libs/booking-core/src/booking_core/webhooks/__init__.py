"""Signed webhooks: a tenant's endpoints, their signing secrets, and the deliveries of its booking events."""
