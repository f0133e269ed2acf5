#!/usr/bin/env python3
"""`rust-version` is true for every feature: it is at least the `rust-version` of every crate
the locked dependency graph builds with all features on (normal and build dependencies; dev
dependencies are the tests' business). Prints the crates that set the floor per feature set
checked, and fails when Cargo.toml declares less.

Usage: python3 .ci/msrv_check.py
"""
import json
import re
import subprocess
import sys


def version_key(v):
    parts = [int(x) for x in v.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def floor(features):
    """The highest `rust-version` among the crates built with `features`, and who sets it."""
    meta = json.loads(
        subprocess.check_output(
            ["cargo", "metadata", "--format-version", "1", "--locked"] + features,
            stderr=subprocess.DEVNULL,
        )
    )
    packages = {p["id"]: p for p in meta["packages"]}
    nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
    root = meta["resolve"]["root"]
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for dep in nodes[node]["deps"]:
            if any(kind["kind"] in (None, "build") for kind in dep["dep_kinds"]):
                stack.append(dep["pkg"])
    found = [
        (version_key(packages[i]["rust_version"]), packages[i]["rust_version"], packages[i]["name"])
        for i in seen
        if i != root and packages[i].get("rust_version")
    ]
    return max(found) if found else ((0, 0, 0), "0", "none")


def main():
    manifest = open("Cargo.toml").read()
    declared = re.search(r'^rust-version\s*=\s*"([^"]+)"', manifest, re.M)
    if not declared:
        print("Cargo.toml declares no rust-version")
        return 1
    declared = declared.group(1)
    worst = None
    for label, features in (("default features", []), ("all features", ["--all-features"])):
        key, version, crate = floor(features)
        print(f"{label}: the locked crates need Rust {version} ({crate})")
        if worst is None or key > worst[0]:
            worst = (key, version, crate)
    if version_key(declared) < worst[0]:
        print(f"rust-version = {declared} is below {worst[1]}, which {worst[2]} needs")
        return 1
    print(f"rust-version = {declared}: true for every feature")
    return 0


if __name__ == "__main__":
    sys.exit(main())
