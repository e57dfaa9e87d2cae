"""``iotctl policy``: check, explain, import and apply the security policy.

Without ``--file``, ``check`` and ``explain`` judge the dev stack's *effective* policy: the
policy file (``IOT_POLICY_FILE``, default ``config/policy.yaml``) plus registered devices plus
the stack's admin, i.e. what the servers enforce. ``apply`` enforces it on the secured stack.

Exit codes: 0 success (``check``: no findings; ``explain``: allowed), 1 failure (``check``:
findings; ``explain``: denied, like ``kubectl auth can-i``), 2 the command line was wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from devstack.secured import ApplyReport, SecuredStack
from devstack.settings import DevStackSettings
from policy.checks import check
from policy.engine import Authorizer, Explanation, parse_resource
from policy.errors import RequestError
from policy.loader import dump_policy, load_policy
from policy.model import Policy, PrincipalKind, Rule
from policy.mosquitto_acl import import_mosquitto_acl

__all__ = ["register"]


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def _policy(args: argparse.Namespace) -> Policy:
    if args.file is not None:
        return load_policy(args.file)
    return SecuredStack(DevStackSettings.from_env()).effective()


def _where(rule: Rule, source: str | None) -> str:
    place = f"{source}:{rule.line}" if source and rule.line else f"line {rule.line}"
    return f"rule {rule.label} ({rule.effect.value}, {place})"


def _cmd_check(args: argparse.Namespace) -> int:
    policy = _policy(args)
    findings = check(policy)
    if args.json:
        print(
            json.dumps(
                {
                    "source": policy.source,
                    "findings": [
                        {"kind": f.kind.value, "line": f.line, "message": f.message}
                        for f in findings
                    ],
                },
                indent=2,
            )
        )
    else:
        for finding in findings:
            print(f"{policy.source}:{finding}" if finding.line else str(finding))
        rules, principals = len(policy.rules), len(policy.principals)
        verdict = f"{len(findings)} finding(s)" if findings else "no findings"
        print(f"{policy.source}: {principals} principals, {rules} rules, {verdict}")
    return 1 if findings else 0


def _print_explanation(explanation: Explanation) -> None:
    decision = explanation.decision
    print(f"{'ALLOWED' if decision.allowed else 'DENIED'}: {decision.reason}")
    if decision.rule is not None:
        print(f"  decided by {_where(decision.rule, explanation.source)}")
    elif explanation.super_user:
        print("  decided by super_users")
    else:
        print("  decided by default deny (no rule allows it)")
    for title, rules in (("allow", explanation.allowing), ("deny", explanation.denying)):
        for rule in rules:
            if rule is not decision.rule:
                print(f"  also matching ({title}): {_where(rule, explanation.source)}")


def _cmd_explain(args: argparse.Namespace) -> int:
    try:
        resource = parse_resource(args.resource)
    except RequestError as exc:
        print(f"iotctl policy explain: {exc}", file=sys.stderr)
        return 2
    explanation = Authorizer(_policy(args)).explain(
        args.principal, args.action, resource, client_id=args.client_id, host=args.host
    )
    if args.json:
        print(json.dumps(explanation.as_dict(), indent=2))
    else:
        _print_explanation(explanation)
    return 0 if explanation.decision.allowed else 1


def _cmd_import(args: argparse.Namespace) -> int:
    try:
        text = Path(args.acl_file).read_bytes().decode("utf-8")
    except OSError as exc:
        print(f"iotctl: cannot read {args.acl_file}: {exc.strerror}", file=sys.stderr)
        return 1
    except UnicodeDecodeError as exc:
        print(f"iotctl: {args.acl_file} is not UTF-8 ({exc.reason})", file=sys.stderr)
        return 1
    imported = import_mosquitto_acl(text)
    header = (
        f"# Imported from {args.acl_file} by `iotctl policy import-mosquitto`: same decisions\n"
        "# for every authenticated user. Review kinds and add groups before applying.\n"
    )
    body = header + dump_policy(imported.to_policy(PrincipalKind(args.kind)))
    for warning in imported.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output is None:
        sys.stdout.write(body)
    else:
        Path(args.output).write_text(body)
        rules, users = len(imported.rules), len(imported.principals)
        print(f"wrote {args.output}: {users} principals, {rules} rules", file=sys.stderr)
    return 0


def _print_report(report: ApplyReport) -> None:
    verb = "would" if report.dry_run else "did"
    kafka = report.kafka
    print(f"{'Plan' if report.dry_run else 'Applied'}: {report.policy_source}")
    for title, users in (
        ("create SCRAM user", kafka.create_users),
        ("refresh SCRAM user", kafka.refresh_users),
        ("delete SCRAM user", kafka.delete_users),
    ):
        for user in users:
            print(f"  kafka: {verb} {title} {user}")
    for title, bindings in (("create", kafka.acls.create), ("delete", kafka.acls.delete)):
        for b in bindings:
            print(
                f"  kafka: {verb} {title} ACL {b.permission.value} {b.principal} "
                f"{b.operation.value} {b.resource_type.value}:{b.pattern_type.value}:{b.name}"
                f" host={b.host}"
            )
    for foreign in report.foreign_bindings:
        print(f"  kafka: left alone (outside the policy model): {foreign}")
    sync = report.mosquitto
    changed = "files changed" if sync.changed else "files unchanged"
    print(f"  mqtt: {changed}; {sync.note}")
    for user in sync.removed_users:
        print(f"  mqtt: {user} can no longer log in (disconnected on reload)")
    for name in report.new_secrets:
        print(f"  secrets: {verb} generate a password for {name}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _password_source(text: str) -> tuple[str, str]:
    principal, sep, variable = text.partition("=")
    if not (sep and principal and variable):
        raise argparse.ArgumentTypeError(f"{text!r} is not PRINCIPAL=VARIABLE")
    return principal, variable


def _cmd_apply(args: argparse.Namespace) -> int:
    stack = SecuredStack(DevStackSettings.from_env())
    passwords: dict[str, str] = {}
    for principal, variable in args.password:
        value = os.environ.get(variable, "")
        if not value:
            print(f"iotctl: {variable} (the password of {principal}) is not set", file=sys.stderr)
            return 1
        passwords[principal] = value
    if passwords or args.prepare_gateway or args.create_topics:
        stack.require_secure("`policy apply`")
        stack.effective()  # a malformed policy stops everything before anything is written
    if passwords and not args.dry_run:
        for name in stack.adopt_passwords(passwords):
            _progress(f"secrets: stored the given password of {name}")
    if args.prepare_gateway and not args.dry_run:
        stack.prepare_gateway(_progress)
    if args.create_topics and not args.dry_run:
        stack.create_topics(_progress)
    report = stack.apply(dry_run=args.dry_run, progress=_progress)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_report(report)
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``policy check|explain|import-mosquitto|apply`` to the ``iotctl`` parser."""
    policy = commands.add_parser(
        "policy",
        help="check, explain, import and apply the security policy",
        description="The one security policy for MQTT, Kafka and HTTP. Without --file, the "
        "dev stack's effective policy: IOT_POLICY_FILE (config/policy.yaml) plus the "
        "devices registered with `iotctl devices add`.",
    )
    actions = policy.add_subparsers(dest="action", required=True, metavar="ACTION")

    def with_file(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--file", type=Path, help="judge this policy file on its own")
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON")

    checker = actions.add_parser(
        "check",
        help="list unknown principals, rules that never match, shadowed rules (exit 1 if any)",
    )
    with_file(checker)
    checker.set_defaults(handler=_cmd_check)

    explain = actions.add_parser(
        "explain",
        help="decide one request and show the rule (with its line) that made the decision",
        description="Exit 0 when allowed, 1 when denied. Resources: mqtt:<topic>, "
        "kafka:topic:<name>, kafka:group:<name>, kafka:transactional_id:<name>, "
        "kafka:cluster, http:<device or *>[:<topic>].",
    )
    explain.add_argument("--principal", required=True, help="principal id (User: is stripped)")
    explain.add_argument(
        "--action", required=True, help="publish|subscribe, a Kafka operation, or read"
    )
    explain.add_argument("--resource", required=True, help="e.g. mqtt:devices/d1/telemetry")
    explain.add_argument("--client-id", help="MQTT client id (fills %%c)")
    explain.add_argument("--host", help="client address for Kafka host rules")
    with_file(explain)
    explain.set_defaults(handler=_cmd_explain)

    importer = actions.add_parser(
        "import-mosquitto",
        help="migrate a Mosquitto acl_file into policy YAML with identical decisions",
    )
    importer.add_argument("acl_file", metavar="ACL_FILE")
    importer.add_argument("--output", "-o", help="write the policy here instead of stdout")
    importer.add_argument(
        "--kind",
        choices=[kind.value for kind in PrincipalKind],
        default=PrincipalKind.DEVICE.value,
        help="kind of the imported users (default: device)",
    )
    importer.set_defaults(handler=_cmd_import)

    apply = actions.add_parser(
        "apply",
        help="enforce the policy on the secured stack: Kafka users and ACLs, MQTT logins and ACLs",
        description="All or nothing: a malformed policy is reported with its line and "
        "nothing is changed. Needs the secured stack (the default) running.",
    )
    apply.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    apply.add_argument("--json", action="store_true", help="print machine-readable JSON")
    apply.add_argument(
        "--password",
        action="append",
        default=[],
        type=_password_source,
        metavar="PRINCIPAL=VARIABLE",
        help="use the password in environment variable VARIABLE for PRINCIPAL instead of a "
        "generated one (a deployment that hands its services their passwords, e.g. compose)",
    )
    apply.add_argument(
        "--prepare-gateway",
        action="store_true",
        help="write the gateway's MQTT files (TLS certificate, logins) as `dev up` does, for "
        "gateways that read them from a shared folder (compose.yaml)",
    )
    apply.add_argument(
        "--create-topics",
        action="store_true",
        help="create the platform's missing topics first (IOT_KAFKA_BROKERS sets their "
        "replication and min ISR), for a cluster the stack does not run (IOT_KAFKA_SERVERS)",
    )
    apply.set_defaults(handler=_cmd_apply)
