"""What README's apt commands install on a fresh machine: packages, download and disk, by apt's own simulation.

    python bench/install_size.py --fresh /work/.library/env/packages/installed-python.txt

A fresh machine's package set (a list of `apt<TAB>name<TAB>version` lines) becomes a dpkg status
file (each package's stanza from this machine's dpkg status or apt's lists, at that version);
`apt-get -s` then plans each command's install against it, with this machine's apt lists
(run `apt-get update -o Acquire::Languages=en` first). Prints one Markdown row per command:
packages newly installed, download size, disk used after unpacking. Minutes need a real fresh
machine: this measures what is installed, not how fast.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

DEFAULT = "wordnet-base fortunes sword-text-kjv sword-text-web"  # the default recipe's Debian sources
COMMANDS = {
    "README command 1 (default recipe)": f"--no-install-recommends {DEFAULT}",
    "before: command 1 with r-bioc-go.db": f"{DEFAULT} r-bioc-go.db",
    "medical-go (r-bioc-go.db)": "--no-install-recommends r-bioc-go.db",
    "the test command": f"{DEFAULT} r-bioc-go.db chromium chromium-driver postgresql",
}


def fresh_status(listing: Path) -> str:
    """A dpkg status file holding exactly the `apt` packages of `listing`, installed: each one's
    stanza from this machine's dpkg status, else the newest in apt's lists."""
    wanted = []
    for line in listing.read_text().splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[0] == "apt":
            wanted.append(parts[1].split(":")[0])
    here = _stanzas(Path("/var/lib/dpkg/status").read_text())
    missing = [name for name in wanted if name not in here]
    listed = _show(missing)
    stanzas = []
    for name in sorted(set(wanted)):
        stanza = here.get(name) or listed.get(name)
        if stanza is None:
            continue  # a package no list or status knows: apt could not resolve against it either
        stanza = {**stanza, "Status": "install ok installed"}
        stanzas.append("\n".join(f"{k}: {v}" for k, v in stanza.items() if k not in ("Filename", "MD5sum", "SHA256")))
    return "\n\n".join(stanzas) + "\n"


def _show(names: list[str]) -> dict[str, dict[str, str]]:
    """The newest stanza apt's lists hold for each name (one apt-cache call for all)."""
    if not names:
        return {}
    shown = subprocess.run(["apt-cache", "show", "--no-all-versions", *names], capture_output=True, text=True).stdout
    return _stanzas(shown)


def _stanzas(text: str) -> dict[str, dict[str, str]]:
    found = {}
    for block in text.strip().split("\n\n"):
        fields, key = {}, None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        if "Package" in fields:
            found[fields["Package"]] = fields
    return found


def simulate(status: Path, args: str) -> tuple[int, float, float]:
    """(packages newly installed, download MB, disk MB) of `apt-get install ARGS` on that machine."""
    done = subprocess.run(["apt-get", "-s", "-o", f"Dir::State::status={status}", "install", "-y", *args.split()],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr or done.stdout)
    # "Inst name (version ...)" is a new package; "Inst name [old] (new ...)" an upgrade of one already there
    installed = [line.split()[1] for line in done.stdout.splitlines()
                 if line.startswith("Inst ") and not line.split()[2].startswith("[")]
    info = _show(installed)
    download = sum(int(info[n].get("Size", 0)) for n in installed if n in info) / 1e6
    disk = sum(int(info[n].get("Installed-Size", 0)) for n in installed if n in info) / 1e3  # dpkg counts KiB
    return len(installed), download, disk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", type=Path, required=True, help="the fresh machine's package list")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        status = Path(tmp) / "status"
        status.write_text(fresh_status(args.fresh))
        print(f"fresh machine: {len(re.findall(r'^Package: ', status.read_text(), re.M))} packages installed\n")
        print("| command | apt-get install | new packages | download | disk |")
        print("|---|---|---|---|---|")
        for what, command in COMMANDS.items():
            n, download, disk = simulate(status, command)
            print(f"| {what} | `{command}` | {n} | {download:.0f} MB | {disk:.0f} MB |")


if __name__ == "__main__":
    main()
