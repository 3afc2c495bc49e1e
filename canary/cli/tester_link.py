"""`canary tester-link CLUSTER [--ttl 8h]` prints a one-time link; `--list` shows the live ones, `--revoke ID|all` ends them."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from canary.cli.plan import when


def add_parser(sub: Any, admin_help: str) -> None:
    v = sub.add_parser("tester-link", help="a one-time link that pins one browser to CLUSTER whatever the share")
    v.add_argument("cluster", nargs="?", metavar="CLUSTER", help="the cluster the tester's browser goes to")
    v.add_argument("--ttl", default="8h", help="how long the link and its pin live: 30m, 8h, 2d (default 8h, "
                                               "at most 30d)")
    v.add_argument("--list", action="store_true", help="show the live links (no URLs: each is shown once)")
    v.add_argument("--revoke", metavar="ID|all", help="end a link (or every link): its tester's next request is "
                                                       "placed by the share")
    v.add_argument("--admin", default=argparse.SUPPRESS, help=admin_help)


def tester_link_verb(a: argparse.Namespace, call_admin: Callable[..., dict[str, Any]],
                     die: Callable[[str], Any]) -> int:
    if sum((a.cluster is not None, a.list, a.revoke is not None)) != 1:
        die("tester-link: give CLUSTER, --list or --revoke ID|all (one of them)")
    if a.list:
        links = call_admin(a.admin, "GET", "/api/tester-links")["links"]
        if not links:
            print("no live tester links")
        for link in links:
            opened = f"opened {when(link['opened_at'])}" if link["opened_at"] else "not opened yet"
            print(f"{link['id']}  {link['cluster']:<10} until {when(link['expires_at'])}  {opened}")
        return 0
    if a.revoke is not None:
        path = "/api/tester-links" if a.revoke == "all" else f"/api/tester-links/{a.revoke}"
        if a.revoke != "all" and not a.revoke.replace("-", "").replace("_", "").isalnum():
            die(f"tester-link --revoke: expected a link id (tester-link --list) or all, got {a.revoke!r}")
        ended = call_admin(a.admin, "DELETE", path, bad_args=(400, 404))["ended"]
        print(f"ended {len(ended)} tester link(s)" + (f": {', '.join(ended)}" if ended else ""))
        return 0
    doc = call_admin(a.admin, "POST", "/api/tester-links", {"cluster": a.cluster, "ttl": a.ttl},
                     bad_args=(400, 409))
    print(doc["url"])
    print(f"one-time link {doc['id']}: pins the browser that opens it to {doc['cluster']} until "
          f"{when(doc['expires_at'])}; end it with: canary tester-link --revoke {doc['id']}")
    return 0
