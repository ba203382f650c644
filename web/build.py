"""Build the web app: web/src → web/dist, the folder the gateway serves (WEB_ROOT).

    python web/build.py [--src web/src] [--out web/dist]

Standard library only, no npm: the app is plain ES modules and CSS. Every JS and CSS
file goes to dist/assets/ under a name carrying a hash of its content, so the gateway
can cache /assets/ for a year (immutable) while index.html, never cached, names the
current files. A module's hash covers the hashed names of the modules it imports, so a
change anywhere renames every module that depends on it and no browser ever mixes an
old module with a new one. Relative imports (`from "./x.js"`, `import("./x.js")`) are
rewritten; the entry's static imports are announced with <link rel="modulepreload"> so
a slow phone fetches them in parallel instead of one after another.

The new build is written next to the old one and swapped in with renames, so a running
gateway never serves half a build. Other files in src (images, icons) are copied as
they are.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import posixpath
import re
import shutil
import sys
from pathlib import Path

WEB = Path(__file__).resolve().parent
HASH_CHARS = 10

# `import x from "./a.js"`, `export * from "./a.js"`, `import "./a.js"`, `import("./a.js")`.
STATIC_IMPORT = re.compile(r"""(\b(?:import|export)\b[^'";]*?\bfrom\s*|\bimport\s*)(["'])(\.{1,2}/[^"']+\.js)\2""")
DYNAMIC_IMPORT = re.compile(r"""(\bimport\s*\(\s*)(["'])(\.{1,2}/[^"']+\.js)\2(\s*\))""")
# References from index.html to sources: href="/app.css", src="/js/main.js".
HTML_REF = re.compile(r"""(\b(?:href|src)=)(["'])/([^"':]+\.(?:js|css))\2""")
PRELOAD_MARK = "<!-- modulepreload -->"


class BuildError(Exception):
    pass


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


def hashed_name(source: str, data: bytes) -> str:
    """'js/pages/quiz.js' → 'js-pages-quiz.3f2a9c0d1e.js': flat, so every import is './name'."""
    stem, dot, ext = source.rpartition(".")
    return f"{stem.replace('/', '-')}.{content_hash(data)}{dot}{ext}"


def imports_of(source: str, text: str) -> tuple[list[str], list[str]]:
    """(static, dynamic) imports of a module as paths relative to src."""
    base = posixpath.dirname(source)

    def resolve(spec: str) -> str:
        return posixpath.normpath(posixpath.join(base, spec))

    static = [resolve(m.group(3)) for m in STATIC_IMPORT.finditer(text)]
    dynamic = [resolve(m.group(3)) for m in DYNAMIC_IMPORT.finditer(text)]
    return static, dynamic


def build(src: Path, out: Path) -> dict[str, str]:
    """Writes the build to `out`; returns {source path: served path}."""
    if not (src / "index.html").is_file():
        raise BuildError(f"{src}/index.html is missing")
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    rel = {p: p.relative_to(src).as_posix() for p in files}
    modules = {rel[p]: p.read_text(encoding="utf-8") for p in files if p.suffix == ".js"}
    styles = {rel[p]: p.read_bytes() for p in files if p.suffix == ".css"}

    graph: dict[str, tuple[list[str], list[str]]] = {}
    for source, text in modules.items():
        static, dynamic = imports_of(source, text)
        for dep in (*static, *dynamic):
            if dep not in modules:
                raise BuildError(f"{source} imports {dep}, which is not in {src}")
        graph[source] = (static, dynamic)

    served: dict[str, str] = {}
    output: dict[str, bytes] = {}
    visiting: set[str] = set()

    def emit(source: str) -> str:
        """Hash a module after its dependencies (a cycle cannot be content-hashed: refuse it)."""
        if source in served:
            return served[source]
        if source in visiting:
            raise BuildError(f"import cycle through {source}")
        visiting.add(source)
        for dep in (*graph[source][0], *graph[source][1]):
            emit(dep)
        base = posixpath.dirname(source)

        def rewrite(match: re.Match[str]) -> str:
            target = posixpath.normpath(posixpath.join(base, match.group(3)))
            name = posixpath.basename(served[target])
            return f"{match.group(1)}{match.group(2)}./{name}{match.group(2)}" + (
                match.group(4) if match.re is DYNAMIC_IMPORT else ""
            )

        text = DYNAMIC_IMPORT.sub(rewrite, STATIC_IMPORT.sub(rewrite, modules[source]))
        data = text.encode("utf-8")
        served[source] = f"assets/{hashed_name(source, data)}"
        output[served[source]] = data
        visiting.discard(source)
        return served[source]

    for source in sorted(modules):
        emit(source)
    for source, data in styles.items():
        served[source] = f"assets/{hashed_name(source, data)}"
        output[served[source]] = data

    html = (src / "index.html").read_text(encoding="utf-8")
    entries: list[str] = []

    def rewrite_html(match: re.Match[str]) -> str:
        source = match.group(3)
        if source not in served:
            raise BuildError(f"index.html refers to /{source}, which is not in {src}")
        if source.endswith(".js"):
            entries.append(source)
        return f"{match.group(1)}{match.group(2)}/{served[source]}{match.group(2)}"

    html = HTML_REF.sub(rewrite_html, html)
    preload: list[str] = []
    for entry in entries:
        for dep in static_closure(entry, graph):
            tag = f'<link rel="modulepreload" href="/{served[dep]}">'
            if tag not in preload:
                preload.append(tag)
    html = html.replace(PRELOAD_MARK, "\n".join(preload))

    for path in files:
        if path.suffix in (".js", ".css") or rel[path] == "index.html":
            continue
        served[rel[path]] = rel[path]
        output[rel[path]] = path.read_bytes()
    output["index.html"] = html.encode("utf-8")
    served["index.html"] = "index.html"
    output["asset-manifest.json"] = json.dumps(served, indent=2, sort_keys=True).encode("utf-8") + b"\n"

    staging = out.with_name(out.name + ".new")
    if staging.exists():
        shutil.rmtree(staging)
    for name, data in output.items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    previous = out.with_name(out.name + ".old")
    if previous.exists():
        shutil.rmtree(previous)
    if out.exists():
        out.rename(previous)
    staging.rename(out)
    if previous.exists():
        shutil.rmtree(previous)
    return served


def static_closure(entry: str, graph: dict[str, tuple[list[str], list[str]]]) -> list[str]:
    """Every module the entry needs before it runs (static imports, transitively), entry excluded."""
    seen: list[str] = []
    stack = list(reversed(graph[entry][0]))
    while stack:
        module = stack.pop()
        if module in seen or module == entry:
            continue
        seen.append(module)
        stack.extend(reversed(graph[module][0]))
    return seen


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=WEB / "src")
    parser.add_argument("--out", type=Path, default=WEB / "dist")
    args = parser.parse_args(argv[1:])
    try:
        served = build(args.src.resolve(), args.out.resolve())
    except BuildError as exc:
        print(f"web/build.py: {exc}", file=sys.stderr)
        return 1
    total = sum((args.out / path).stat().st_size for path in served.values())
    print(f"web/build.py: {len(served)} files, {total / 1024:.1f} KiB → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
