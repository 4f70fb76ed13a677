"""The policy model: Casbin's RBAC with domains, where the domain is the tenant.

A request is (subject, tenant, object, action). Subjects are user ids and
``key:<id>`` for API keys; they get roles in a tenant through ``g`` rules (a
membership, an API key's role). A ``p`` rule grants or denies a role an
action on an object pattern in one tenant::

    p, member, <tenant>, collection:*, read, allow
    p, admin,  <tenant>, tenant,       delete, deny

Objects are resource names — ``tenant``, ``members``, ``roles``,
``policies``, ``api_keys``, ``audit``, ``users``, ``events``,
``collection:<name>``, ``bucket:<name>``, ``function:<name>``,
``workflow:<type>`` — matched with ``keyMatch`` (``collection:*`` covers every
collection). Actions are ``read``, ``create``, ``update``, ``delete``,
``invoke``, ``publish``, ``admin``, or ``*``. A deny rule beats any allow.

Every tenant is seeded with the built-in roles below; a tenant's admins may
change what those roles can do in their tenant, and add roles of their own.
"""

from __future__ import annotations

import re

__all__ = ["ACTIONS", "BUILTIN_POLICIES", "BUILTIN_ROLES", "MODEL_TEXT", "valid_object", "valid_role_name"]

MODEL_TEXT = """
[request_definition]
r = sub, dom, obj, act

[policy_definition]
p = sub, dom, obj, act, eft

[role_definition]
g = _, _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub, r.dom) && r.dom == p.dom && keyMatch(r.obj, p.obj) && (p.act == "*" || r.act == p.act)
"""

ACTIONS = ("read", "create", "update", "delete", "invoke", "publish", "admin", "*")

BUILTIN_ROLES: dict[str, str] = {
    "owner": "Everything, including deleting the tenant and naming other owners.",
    "admin": "Everything except deleting the tenant or naming owners.",
    "member": "Reads and writes application data; invokes functions and workflows.",
    "viewer": "Reads application data.",
}

_DATA = ("collection:*", "bucket:*")
_RUN = ("function:*", "workflow:*")

#: (role, object, action, effect) seeded into every new tenant.
BUILTIN_POLICIES: tuple[tuple[str, str, str, str], ...] = (
    ("owner", "*", "*", "allow"),
    ("admin", "*", "*", "allow"),
    ("admin", "tenant", "delete", "deny"),
    *(("member", o, a, "allow") for o in _DATA for a in ("read", "create", "update", "delete")),
    *(("member", o, a, "allow") for o in _RUN for a in ("read", "invoke")),
    ("member", "events", "read", "allow"),
    ("member", "events", "publish", "allow"),
    ("member", "members", "read", "allow"),
    ("member", "tenant", "read", "allow"),
    *(("viewer", o, "read", "allow") for o in (*_DATA, *_RUN)),
    ("viewer", "events", "read", "allow"),
    ("viewer", "members", "read", "allow"),
    ("viewer", "tenant", "read", "allow"),
)

_ROLE = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")
_OBJECT = re.compile(r"^(\*|[a-z_]+(:[A-Za-z0-9_\-.*/]{1,200})?)$")


def valid_role_name(name: str) -> bool:
    return bool(_ROLE.match(name))


def valid_object(obj: str) -> bool:
    return bool(_OBJECT.match(obj))
