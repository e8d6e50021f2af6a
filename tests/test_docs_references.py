"""Every reference to a document resolves inside the repository: code, configs, tests, benchmarks, the README and
the docs cite `docs/<name>.md` (optionally `§<section>`), and each such file exists and has the section cited.
The documents of the study's source material are not part of the repository, so nothing may cite them."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCANNED = ["brainalign", "configs", "tests", "bench", "tools", "docs", "main.py", "README.md", "pyproject.toml"]
# a document reference: `docs/<name>.md` (optionally `§<section>`), `<name>.md §<section>`, or a markdown link
# `](<path>.md)`; other `*.md` names in the code are files a run writes (report.md, SIMULATED.md)
_SECTION = r"(?:`?`?\s*§\s*([0-9]+(?:\.[0-9]+)?(?:\([a-z]\)|[a-z])?))"
REF = re.compile(
  r"(?<![\w/.-])(docs/[\w-]+\.md)"
  + _SECTION
  + "?"
  + r"|(?<![\w/.-])([\w-]+\.md)"
  + _SECTION
  + r"|\]\(([\w./-]+\.md)(?:#[\w-]*)?\)"
)
UNAVAILABLE = re.compile(r"(?<![\w/-])(study|things-format|style|peers)\.md")


def _files():
  for entry in SCANNED:
    path = ROOT / entry
    paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in (".py", ".md", ".toml"))
    yield from (p for p in paths if "__pycache__" not in p.parts)


def _target(name: str, source: pathlib.Path) -> pathlib.Path | None:
  for base in (ROOT, source.parent, ROOT / "docs"):
    if (base / name).is_file():
      return base / name
  return None


def _sections(doc: pathlib.Path) -> set[str]:
  """Section numbers of a document's headings: '### 6.4 Title' -> 6.4; '#### 4.2(b) Title' -> 4.2(b), 4.2b."""
  out = set()
  for line in doc.read_text().splitlines():
    m = re.match(r"#+\s+([0-9]+(?:\.[0-9]+)?)(\([a-z]\))?[\s.]", line + " ")
    if m:
      out.add(m.group(1))
      if m.group(2):
        out.update({m.group(1) + m.group(2), m.group(1) + m.group(2)[1]})
  return out


def test_no_reference_to_a_document_outside_the_repository():
  hits = [
    f"{p.relative_to(ROOT)}:{k}: {m.group(0)}"
    for p in _files()
    if p.name != pathlib.Path(__file__).name
    for k, line in enumerate(p.read_text().splitlines(), 1)
    for m in UNAVAILABLE.finditer(line)
  ]
  assert not hits, "references to documents users do not have:\n" + "\n".join(hits)


def test_every_document_reference_resolves_to_a_file_and_section():
  dangling = []
  for p in _files():
    for k, line in enumerate(p.read_text().splitlines(), 1):
      for m in REF.finditer(line):
        name = m.group(1) or m.group(3) or m.group(5)
        section = m.group(2) or m.group(4)
        target = _target(name, p)
        if target is None:
          dangling.append(f"{p.relative_to(ROOT)}:{k}: {name} (no such file)")
        elif section and section not in _sections(target):
          dangling.append(f"{p.relative_to(ROOT)}:{k}: {name} §{section} (no such section)")
  assert not dangling, "dangling document references:\n" + "\n".join(dangling)
