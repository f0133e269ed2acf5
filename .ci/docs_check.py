#!/usr/bin/env python3
"""Check that the Rust snippets under docs/ carry no hidden rustdoc lines.

Usage: python3 .ci/docs_check.py [FILE.md ...]   (default: docs/*.md of the repository)

The pages in docs/ are module documentation (`#![doc = include_str!(...)]`), so their Rust
code blocks are doctests; they are also read as they are, on GitHub and in editors, where a
hidden line (`# fn main() {`, `# }`, ...) shows up and gets copied. A code block is Rust when
rustdoc compiles it: its info string is empty, or its first word is `rust` or a rustdoc
attribute (`no_run`, `should_panic`, ...). Inside one, a line is hidden when, leading
whitespace aside, it is `#` alone or starts with `# `.

Prints `file:line: text` for each hidden line and exits 1 if there is any, 0 otherwise.
Python 3 standard library only.
"""

import re
import sys
from pathlib import Path

RUSTDOC_ATTRIBUTES = {
    "ignore",
    "no_run",
    "should_panic",
    "compile_fail",
    "test_harness",
    "standalone_crate",
}

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


def is_rust(info: str) -> bool:
    words = [w for w in re.split(r"[,\s]+", info.strip().strip("{}")) if w]
    if not words:
        return True
    first = words[0]
    return (
        first == "rust"
        or first in RUSTDOC_ATTRIBUTES
        or first.startswith("ignore-")
        or re.fullmatch(r"edition\d{4}", first) is not None
    )


def hidden_lines(path: Path):
    """Yields (line number, line) for each hidden line in a Rust code block of `path`."""
    fence = None  # the opening fence's characters while inside a code block
    rust = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = FENCE.match(line)
        if fence is None:
            if match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
                fence, rust = match.group(1), is_rust(match.group(2))
            continue
        if (
            match
            and match.group(1)[0] == fence[0]
            and len(match.group(1)) >= len(fence)
            and not match.group(2).strip()
        ):
            fence = None
            continue
        stripped = line.strip()
        if rust and (stripped == "#" or stripped.startswith("# ")):
            yield number, line


def main(argv):
    if argv:
        files = [Path(a) for a in argv]
    else:
        root = Path(__file__).resolve().parent.parent
        files = sorted((root / "docs").glob("*.md"))
        if Path.cwd().resolve() == root:
            files = [f.relative_to(root) for f in files]
    found = 0
    for path in files:
        for number, line in hidden_lines(path):
            print(f"{path}:{number}: {line}")
            found += 1
    if found:
        print(
            f"{found} hidden rustdoc line(s) in Rust code blocks: write the code the reader "
            "should copy (see .ci/docs_check.py)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
