"""web/build.py: content-hashed assets, rewritten imports, and a hash that changes when any
module a file imports changes (so a browser never mixes an old module with a new one)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.stack import ROOT


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("web_build", ROOT / "web" / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["web_build"] = module
    spec.loader.exec_module(module)
    return module


build = load_build()


def write_sources(src: Path, leaf: str = "export const x = 1;\n") -> None:
    (src / "js" / "pages").mkdir(parents=True)
    (src / "index.html").write_text('<link rel="stylesheet" href="/app.css">\n<!-- modulepreload -->\n'
                                    '<script type="module" src="/js/main.js"></script>\n')
    (src / "app.css").write_text("body { color: #111; }\n")
    (src / "js" / "main.js").write_text(
        'import { x } from "./pages/a.js";\nexport const lazy = () => import("./pages/b.js");\nconsole.log(x);\n')
    (src / "js" / "pages" / "a.js").write_text(f'import "../leaf.js";\n{leaf}')
    (src / "js" / "pages" / "b.js").write_text('export { x } from "./a.js";\n')
    (src / "js" / "leaf.js").write_text(leaf)


def test_assets_are_hashed_and_imports_rewritten(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "dist"
    write_sources(src)
    served = build.build(src, out)
    for source in ("js/main.js", "js/pages/a.js", "js/pages/b.js", "js/leaf.js", "app.css"):
        assert re.fullmatch(r"assets/[a-z-]+\.[0-9a-f]{10}\.(js|css)", served[source]), served[source]
        assert (out / served[source]).is_file()
    main = (out / served["js/main.js"]).read_text()
    assert f'from "./{Path(served["js/pages/a.js"]).name}"' in main
    assert f'import("./{Path(served["js/pages/b.js"]).name}")' in main
    assert f'import "./{Path(served["js/leaf.js"]).name}"' in (out / served["js/pages/a.js"]).read_text()
    html = (out / "index.html").read_text()
    assert f'src="/{served["js/main.js"]}"' in html and f'href="/{served["app.css"]}"' in html
    # Static imports are preloaded; the lazily imported page is not.
    assert f'<link rel="modulepreload" href="/{served["js/pages/a.js"]}">' in html
    assert f'<link rel="modulepreload" href="/{served["js/leaf.js"]}">' in html
    assert served["js/pages/b.js"] not in html


def test_a_changed_module_renames_everything_that_imports_it(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    write_sources(first / "src")
    write_sources(second / "src", leaf="export const x = 2;\n")
    before = build.build(first / "src", first / "dist")
    after = build.build(second / "src", second / "dist")
    assert before["app.css"] == after["app.css"]
    for changed in ("js/leaf.js", "js/pages/a.js", "js/pages/b.js", "js/main.js"):
        assert before[changed] != after[changed], changed


def test_a_rebuild_replaces_the_old_build(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "dist"
    write_sources(src)
    old = build.build(src, out)
    (src / "js" / "leaf.js").write_text("export const x = 3;\n")
    new = build.build(src, out)
    assert not (out / old["js/leaf.js"]).exists() and (out / new["js/leaf.js"]).exists()
    assert not (tmp_path / "dist.new").exists() and not (tmp_path / "dist.old").exists()


def test_missing_imports_and_cycles_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write_sources(src)
    (src / "js" / "leaf.js").write_text('import "./pages/a.js";\n')
    with pytest.raises(build.BuildError, match="cycle"):
        build.build(src, tmp_path / "dist")
    (src / "js" / "leaf.js").write_text('import "./nowhere.js";\n')
    with pytest.raises(build.BuildError, match=r"nowhere\.js"):
        build.build(src, tmp_path / "dist")


def test_the_real_app_builds(tmp_path: Path) -> None:
    served = build.build(ROOT / "web" / "src", tmp_path / "dist")
    html = (tmp_path / "dist" / "index.html").read_text()
    assert "modulepreload" in html and "<!-- modulepreload -->" not in html
    # The organisers' pages are loaded on demand, not with the participants' entry.
    assert served["js/admin/admin.js"] not in html
