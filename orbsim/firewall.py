"""The host firewall rules of orbsim's network: its own nft table (DNS/DHCP from the bridge,
NAT of the subnet) and, where another firewall drops forwarded traffic (Docker's ``FORWARD
DROP``, in nft or iptables-legacy), accept rules for the bridge that are removed with the
network.  Every rule carries the comment ``orbsim``."""

from __future__ import annotations

import ipaddress
import json
import re

from .errors import SimError

TYPE_CHECKING = False  # avoids importing typing on the hot path; mypy treats it as True
if TYPE_CHECKING:
    from typing import Any

TABLE = "orbsim"
COMMENT = "orbsim"


def run_tool(argv: list[str], *, stdin: str | None = None, check: bool = True) -> str:
    import subprocess

    res = subprocess.run(
        argv,
        input=(stdin or "").encode(),
        capture_output=True,
        timeout=60,
    )
    if check and res.returncode != 0:
        msg = (res.stderr or res.stdout).decode(errors="replace").strip()
        raise SimError(f"network: {' '.join(argv[:4])}: {msg or f'exit {res.returncode}'}")
    return res.stdout.decode(errors="replace")


def nft_rules(bridge: str, subnet: ipaddress.IPv4Network) -> str:
    return f"""table inet {TABLE} {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "{bridge}" udp dport {{ 53, 67 }} accept
    iifname "{bridge}" tcp dport 53 accept
  }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    iifname "{bridge}" accept
    oifname "{bridge}" ct state related,established accept
    oifname "{bridge}" accept
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    ip saddr {subnet} ip daddr != {subnet} masquerade
  }}
}}
"""


def dropping_forward_chains() -> list[tuple[str, str, str]]:
    """(family, table, chain) of nft base chains on the forward hook whose policy is drop.

    With iptables-nft (Debian/Ubuntu's default), Docker's ``FORWARD`` chain is one of them.
    """
    import subprocess

    try:
        out = run_tool(["nft", "-j", "list", "chains"], check=True)
        data = json.loads(out)
    except (SimError, ValueError, subprocess.SubprocessError, OSError):
        return []
    chains = []
    names: set[tuple[str, str, str]] = set()
    for item in data.get("nftables", []):
        ch = item.get("chain")
        if not ch:
            continue
        names.add((ch["family"], ch["table"], ch["name"]))
        if ch.get("hook") == "forward" and ch.get("policy") == "drop" and ch["table"] != TABLE:
            chains.append((ch["family"], ch["table"], ch["name"]))
    out_chains = []
    for fam, table, chain in chains:
        # Docker's documented place for user rules is DOCKER-USER, jumped to first from FORWARD
        if (fam, table, "DOCKER-USER") in names:
            out_chains.append((fam, table, "DOCKER-USER"))
        else:
            out_chains.append((fam, table, chain))
    return out_chains


def open_forward(bridge: str) -> list[dict[str, Any]]:
    """Accept the bridge's forwarded traffic in every dropping forward chain; return handles."""
    import shutil
    import subprocess

    added: list[dict[str, Any]] = []
    for fam, table, chain in dropping_forward_chains():
        for rule in (
            ["oifname", bridge, "ct", "state", "related,established", "accept"],
            ["iifname", bridge, "accept"],
        ):
            out = run_tool(
                [
                    "nft",
                    "--echo",
                    "--handle",
                    "insert",
                    "rule",
                    fam,
                    table,
                    chain,
                    *rule,
                    "comment",
                    f'"{COMMENT}"',
                ]
            )
            m = re.search(r"# handle (\d+)", out)
            if m:
                added.append({"family": fam, "table": table, "chain": chain, "handle": m.group(1)})
    # iptables-legacy tables are invisible to nft: handle Docker's FORWARD DROP there too
    legacy = shutil.which("iptables-legacy")
    if legacy:
        res = subprocess.run([legacy, "-S", "FORWARD"], capture_output=True, timeout=30)
        if res.returncode == 0 and b"-P FORWARD DROP" in res.stdout:
            chain = "DOCKER-USER" if b"DOCKER-USER" in res.stdout else "FORWARD"
            for spec in (
                ["-o", bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED"]
                + ["-j", "ACCEPT"],
                ["-i", bridge, "-j", "ACCEPT"],
            ):
                full = [*spec, "-m", "comment", "--comment", COMMENT]
                run_tool([legacy, "-I", chain, *full])
                added.append({"iptables": legacy, "chain": chain, "spec": full})
    return added


def close_forward(rules: list[dict[str, Any]]) -> None:
    import subprocess

    for r in rules:
        if "iptables" in r:
            subprocess.run(
                [r["iptables"], "-D", r["chain"], *r["spec"]], capture_output=True, timeout=30
            )
        else:
            subprocess.run(
                [
                    "nft",
                    "delete",
                    "rule",
                    r["family"],
                    r["table"],
                    r["chain"],
                    "handle",
                    str(r["handle"]),
                ],
                capture_output=True,
                timeout=30,
            )
