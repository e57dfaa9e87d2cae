"""Who a selector names: principal ids, ``group:<name>``, ``role:<name>`` and ``*``."""

from __future__ import annotations

from policy.model import WILDCARD, Policy, Rule

GROUP_PREFIX = "group:"
ROLE_PREFIX = "role:"


class Membership:
    """Resolves groups and roles of a policy once; answers selector questions quickly.

    A role is held directly (``Principal.roles``) or through any group the principal is in
    (``Group.roles``). Unknown principals (not declared in the policy) belong to no group
    and hold no role, so only ``*`` and their own id select them.
    """

    def __init__(self, policy: Policy) -> None:
        group_roles = {group.name: set(group.roles) for group in policy.groups}
        self._groups: dict[str, frozenset[str]] = {}
        self._roles: dict[str, frozenset[str]] = {}
        for principal in policy.principals:
            roles = set(principal.roles)
            for group in principal.groups:
                roles |= group_roles.get(group, set())
            self._groups[principal.id] = frozenset(principal.groups)
            self._roles[principal.id] = frozenset(roles)
        self.known: tuple[str, ...] = tuple(principal.id for principal in policy.principals)

    def selects(self, selector: str, principal_id: str) -> bool:
        """True iff ``selector`` names ``principal_id``."""
        if selector == WILDCARD:
            return True
        if selector.startswith(GROUP_PREFIX):
            return selector[len(GROUP_PREFIX) :] in self._groups.get(principal_id, ())
        if selector.startswith(ROLE_PREFIX):
            return selector[len(ROLE_PREFIX) :] in self._roles.get(principal_id, ())
        return selector == principal_id

    def applies(self, rule: Rule, principal_id: str) -> bool:
        """True iff any selector of ``rule`` names ``principal_id``."""
        return any(self.selects(selector, principal_id) for selector in rule.principals)

    def members(self, selector: str) -> frozenset[str] | None:
        """The ids a selector names; None for ``*`` (every principal, known or not).

        A plain id is returned even when the policy does not declare it.
        """
        if selector == WILDCARD:
            return None
        if selector.startswith((GROUP_PREFIX, ROLE_PREFIX)):
            return frozenset(pid for pid in self.known if self.selects(selector, pid))
        return frozenset({selector})

    def rule_members(self, rule: Rule) -> frozenset[str] | None:
        """Union of :meth:`members` over a rule's selectors; None if any is ``*``."""
        result: set[str] = set()
        for selector in rule.principals:
            named = self.members(selector)
            if named is None:
                return None
            result |= named
        return frozenset(result)
