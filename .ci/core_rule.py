#!/usr/bin/env python3
"""The core names no capability: checked on the source, as docs/architecture.md states it.

1. A core or vocabulary file (CORE and VOCABULARY below) never refers to a capability
   module (`crate::alerts`, `use crate::{..., process}`, ...) and never names a cargo feature
   (`feature = "..."`) outside comments: what every capability needs from the core is
   defined in the core, and a capability's absence is handled by the capability.
2. No import circle between top-level modules of `src/`: imports inside one module's own
   folder are free, but between modules they point one way.

Comments (`//`, `///`, `//!`) and the test modules at the end of a file (from its first
`#[cfg(test)]`) are not read. Exits 1 with file:line for every finding.
Usage: python3 .ci/core_rule.py [src-dir]
"""
import os
import re
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "src"

# The core: records, and names nothing above it.
CORE = ["observer", "stats", "registry"]
# The shared vocabulary, below the core (`access` is the token check shared by capabilities).
VOCABULARY = ["names", "labels", "clock", "hex", "response", "time_fmt", "sync", "macros", "access"]
# `access` may use the core (its refusal counter is registered through it).
MAY_USE_CORE = {"access"}


def top_modules():
    mods = {}
    for entry in sorted(os.listdir(SRC)):
        path = os.path.join(SRC, entry)
        if entry == "lib.rs":
            continue
        if os.path.isdir(path):
            mods[entry] = [
                os.path.join(d, f)
                for d, _, fs in os.walk(path)
                for f in sorted(fs)
                if f.endswith(".rs")
            ]
        elif entry.endswith(".rs"):
            mods[entry[:-3]] = [path]
    return mods


def root_reexports():
    """Items `lib.rs` re-exports at the crate root, by the module they come from."""
    text = strip(open(os.path.join(SRC, "lib.rs")).read())
    out = {}
    for m in re.finditer(r"pub use\s+(\w+)::(\{[^}]*\}|\w+)\s*;", text):
        for item in re.findall(r"\w+", m.group(2)):
            out[item] = m.group(1)
    return out


def strip(text):
    """The code of a file: no comments, no string literals' contents, no trailing test module."""
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    lines = []
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith("//"):
            lines.append("")
            continue
        # a trailing `// ...` comment (not inside a string: good enough for this code base)
        if "//" in line and '"' not in line:
            line = line[: line.index("//")]
        lines.append(line)
    return "\n".join(lines)


def references(text, modules, reexports):
    """(line, module) for every `crate::` path in `text` naming a top-level module."""
    found = []
    for m in re.finditer(r"crate::(\{|\w+)", text):
        line = text.count("\n", 0, m.start()) + 1
        if m.group(1) == "{":
            depth, i = 1, m.end()
            while i < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            group = text[m.end() : i - 1]
            # only the first segment of each path in the group names a module
            names = [
                p.strip().split("::")[0]
                for p in re.split(r",(?![^{]*\})", group)
                if p.strip()
            ]
        else:
            names = [m.group(1)]
        for name in names:
            name = name.strip("{} \n")
            if name in modules:
                found.append((line, name))
            elif name in reexports:
                found.append((line, reexports[name]))
    return found


def main():
    modules = top_modules()
    reexports = root_reexports()
    lower = set(CORE) | set(VOCABULARY)
    capabilities = set(modules) - lower
    failures = []
    graph = {name: set() for name in modules}
    for name, files in modules.items():
        for path in files:
            text = strip(open(path).read())
            for line, target in references(text, modules, reexports):
                if target != name:
                    graph[name].add(target)
                if name in lower and target in capabilities:
                    failures.append(f"{path}:{line}: the core names the capability `{target}`")
                if name in VOCABULARY and name not in MAY_USE_CORE and target in CORE:
                    failures.append(f"{path}:{line}: the vocabulary uses the core module `{target}`")
            if name in lower:
                for i, line in enumerate(text.split("\n"), 1):
                    if re.search(r'feature\s*=\s*"', line):
                        failures.append(f"{path}:{i}: the core names a feature: {line.strip()}")
    failures.extend(cycles(graph))
    for f in failures:
        print(f)
    if failures:
        print(f"core rule: {len(failures)} finding(s); see docs/architecture.md")
        return 1
    print(f"core rule: {len(lower)} core and vocabulary modules name no capability; "
          f"no import circle among {len(modules)} modules")
    return 0


def cycles(graph):
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                edges = sorted(f"{a} -> {b}" for a in component for b in graph[a] if b in component)
                out.append("import circle among {" + ", ".join(sorted(component)) + "}: " + "; ".join(edges))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
