"""rbac: roles, policies and the one ``authorize`` every module calls (Casbin,
RBAC with domains, domain = tenant). See docs/auth.md."""
