"""Every claim's verdict in two builds side by side (markdown): a released archive's findings.json and a
build's. Used for the before/after tables of issues 11 and 12 (docs/measurements/verdicts-before-after.md).

    python docs/measurements/verdicts_before_after.py OLD_ARCHIVE.tar.gz results/findings.json > out.md
"""

from __future__ import annotations

import json
import sys
import tarfile


def _findings_of_archive(path: str) -> list[dict]:
    with tarfile.open(path) as tar:
        for m in tar:
            if m.name.endswith("/findings.json") and m.name.count("/") == 1:
                return json.load(tar.extractfile(m))
    raise SystemExit(f"{path}: no findings.json at the archive's top level")


def _deciding(c: dict) -> str:
    """The binding bar of a finding as 'name value op threshold', or '' (archives before bars)."""
    bars = c.get("bars") or []
    if not bars:
        return ""
    failing = [b for b in bars if not b.get("passed")]
    b = min(failing or bars, key=lambda b: abs(b.get("relative_margin") or 0))
    return f"{b['name']}: {b['value']:.4g} {b['op']} {b['threshold']:.4g}"


def main(old_path: str, new_path: str) -> None:
    old = {c["id"]: c for c in _findings_of_archive(old_path)}
    new = {c["id"]: c for c in json.load(open(new_path))}
    rows = ["| claim | before | after | deciding bar after |", "| --- | --- | --- | --- |"]
    for cid in sorted(set(old) | set(new)):
        o, n = old.get(cid, {}).get("verdict", "(new claim)"), new.get(cid, {}).get("verdict", "(removed)")
        mark = " **changed**" if cid in old and cid in new and o != n else ""
        rows.append(f"| `{cid}` | {o} | {n}{mark} | {_deciding(new.get(cid, {}))} |")
    count = lambda d: sum(c["verdict"] == "reproduced" for c in d.values())  # noqa: E731
    print(f"Before: {count(old)} of {len(old)} reproduced. After: {count(new)} of {len(new)} reproduced.\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main(*sys.argv[1:3])
