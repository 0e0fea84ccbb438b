"""The repository's references to itself resolve: a clone has every document and file the text points to.

- every `docs/…` path cited in the code, the READMEs, the chart, the Dockerfile and
  the tools names a file or a folder of files that exists (a `../../docs/…` path from
  the file that cites it, any other from the repository's root);
- nothing cites the design sketch the platform started from, which is not in the
  repository: the architecture and its decisions are docs/architecture.md;
- every file or folder docs/architecture.md names as where a decision lives exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Text that may cite a document: source, build files, templates, prose.
TEXT = re.compile(r"\.(py|md|ya?ml|tpl|toml|txt|sh|lua|sql|html|js|css|cfg|ini|json)$|(^|/)(Dockerfile|Makefile)$")
#: Third-party files kept verbatim (JSON schemas whose descriptions link other sites' docs/ pages).
VENDORED = ("tests/schemas/",)
DOCS_REF = re.compile(r"(?<![\w/.-])((?:\.\./)*docs/[\w./-]*\w)")
#: The sketch's file name, or "<its name> decision N": spelled in two parts so that this file cites neither.
DESIGN_CITE = re.compile("DESIGN" + r"(\.md\b|\s+decision)")
#: A repository path in backticks: lower-case segments, a folder (trailing /) or a file with a suffix.
PATH_TOKEN = re.compile(r"^[a-z0-9_][\w.-]*(/[\w.-]+)*(/|\.(py|lua|sql|md|ya?ml|toml|json))$")


def tracked() -> list[str]:
    """The repository's files: tracked, and new ones not ignored."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if (ROOT / p).is_file()]


def text_files() -> list[str]:
    return [p for p in tracked() if TEXT.search(p) and not p.startswith(VENDORED)]


def test_every_docs_path_cited_in_the_repository_exists():
    files = set(tracked())
    cited, missing = 0, []
    for path in text_files():
        for number, line in enumerate((ROOT / path).read_text(errors="replace").splitlines(), 1):
            for ref in DOCS_REF.findall(line):
                cited += 1
                base = (ROOT / path).parent if ref.startswith("../") else ROOT
                target = (base / ref).resolve()
                folder = target.relative_to(ROOT).as_posix() + "/" if target.is_relative_to(ROOT) else None
                if not target.is_file() and not (folder and any(f.startswith(folder) for f in files)):
                    missing.append(f"{path}:{number}: {ref}")
    assert cited >= 20, f"only {cited} docs/ references found: is the pattern still right?"
    assert missing == [], "docs/ references to files that do not exist:\n" + "\n".join(missing)


def test_nothing_cites_the_design_sketch_that_is_not_in_the_repository():
    cites = [f"{path}:{number}: {line.strip()}" for path in text_files()
             for number, line in enumerate((ROOT / path).read_text(errors="replace").splitlines(), 1)
             if DESIGN_CITE.search(line)]
    assert cites == [], "cite docs/architecture.md (its decision numbers) instead:\n" + "\n".join(cites)


def test_every_place_the_architecture_names_exists():
    files = tracked()
    padded = ["/" + p for p in files]
    names = sorted({t for t in re.findall(r"`([^`\s]+)`", (ROOT / "docs" / "architecture.md").read_text())
                    if PATH_TOKEN.match(t)})
    assert len(names) > 50, names

    def exists(name: str) -> bool:
        if "/" not in name:  # a bare file name: some file of the repository has it
            return any(p.endswith("/" + name) for p in padded)
        segment = "/" + name.rstrip("/")
        return any(p.endswith(segment) or segment + "/" in p for p in padded)

    missing = [n for n in names if not exists(n)]
    assert missing == [], f"docs/architecture.md names places that do not exist: {missing}"
