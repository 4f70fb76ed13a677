"""tenancy: tenants, memberships and invitations. See docs/auth.md."""
