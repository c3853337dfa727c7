"""The documentation site: `mkdocs build --strict` builds every page of docs/ with no warning
and without the network, every internal link and anchor resolves (on the site and from
README.md), the math is marked for MathJax, and the pages explain where their examples come
from instead of naming private files.

The transcripts and command lines of the pages are tested by tests/test_readme.py and
tests/test_shell.py; their Python blocks here.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import warnings
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from tests import readme

ROOT = readme.ROOT
CONFIG = ROOT / "mkdocs.yml"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once for this module, strictly, with every proxy pointing nowhere:
    a build that reached for the network would fail."""
    out = tmp_path_factory.mktemp("site")
    nowhere = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",
        "HTTP_PROXY": nowhere,
        "HTTPS_PROXY": nowhere,
        "http_proxy": nowhere,
        "https_proxy": nowhere,
        "NO_PROXY": "",
        "no_proxy": "",
    }
    command = ["build", "--strict", "--config-file", str(CONFIG), "--site-dir", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "WARNING" not in done.stderr, done.stderr[-4000:]
    return out


def nav_files() -> list[str]:
    """The Markdown files the site's navigation lists, in order."""
    import yaml

    config = yaml.safe_load(CONFIG.read_text())
    found: list[str] = []

    def walk(entry: object) -> None:
        if isinstance(entry, str):
            found.append(entry)
        elif isinstance(entry, list):
            for item in entry:
                walk(item)
        elif isinstance(entry, dict):
            for value in entry.values():
                walk(value)

    walk(config["nav"])
    return found


def built(site: Path, page: str) -> Path:
    """Where the site puts the page docs/<page> (directory URLs: grad.md → grad/index.html)."""
    stem = page.removesuffix(".md")
    return site / "index.html" if stem == "index" else site / stem / "index.html"


def test_the_configuration_uses_material_and_math():
    import yaml

    config = yaml.safe_load(CONFIG.read_text())
    assert config["site_name"] == "backprop-cli"
    assert config["theme"]["name"] == "material"
    extensions = {
        next(iter(e)) if isinstance(e, dict) else e for e in config["markdown_extensions"]
    }
    assert "pymdownx.arithmatex" in extensions
    assert any("mathjax" in script.lower() for script in config["extra_javascript"])


def test_every_page_is_in_the_nav_and_built(site):
    pages = sorted(p.name for p in readme.DOCS.glob("*.md"))
    listed = nav_files()
    assert len(listed) == len(set(listed)), "a page is listed twice"
    assert sorted(listed) == pages
    assert len(pages) >= 15
    for page in pages:
        html = built(site, page)
        assert html.is_file(), page
        assert "<article" in html.read_text(), page
    assert (site / "sigmoid_neuron.svg").is_file()
    assert (site / "javascripts" / "mathjax.js").is_file()


class _Page(HTMLParser):
    """The links, sources and ids of one built page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if value is None:
                continue
            if key == "id":
                self.ids.add(value)
            elif (key == "href" and tag in ("a", "link")) or (key == "src" and tag != "script"):
                self.links.append(value)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text())
    return page


def _target(site: Path, page: Path, link: str) -> tuple[Path, str] | None:
    """The file and fragment an internal link of `page` points to; None for external ones."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc:
        return None
    if not parts.path:
        return page, unquote(parts.fragment)
    base = site if parts.path.startswith("/") else page.parent
    target = (base / unquote(parts.path).lstrip("/")).resolve()
    if target.is_dir() or parts.path.endswith("/"):
        target = target / "index.html"
    return target, unquote(parts.fragment)


def test_every_internal_link_and_anchor_resolves(site):
    pages = sorted(site.rglob("*.html"))  # 404.html included: its links are absolute
    parsed = {p.resolve(): _parse(p) for p in pages}
    checked, broken = 0, []
    for path in pages:
        for link in parsed[path.resolve()].links:
            found = _target(site, path, link)
            if found is None:
                continue
            target, fragment = found
            checked += 1
            if not target.is_file():
                broken.append(f"{path.relative_to(site)}: {link} (no such file)")
            elif fragment and target.suffix == ".html":
                ids = parsed[target].ids if target in parsed else _parse(target).ids
                if fragment not in ids:
                    broken.append(f"{path.relative_to(site)}: {link} (no such anchor)")
    assert checked > 200
    assert broken == []


def test_the_link_check_finds_a_broken_link(site, tmp_path):
    page = tmp_path / "page" / "index.html"
    page.parent.mkdir()
    page.write_text('<a href="../grad/#the-report">ok</a>')
    target, fragment = _target(site, page, "../grad/#the-report") or (None, None)
    assert target is not None and fragment == "the-report"
    assert _target(site, page, "https://example.org/") is None
    grad = built(site, "grad.md")
    assert "the-report" in _parse(grad).ids and "no-such-part" not in _parse(grad).ids


README_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_links_reach_the_pages_and_their_anchors(site):
    links = README_LINK.findall(readme.text())
    docs = [link for link in links if link.startswith("docs/")]
    assert len(docs) >= 15
    pages = {f"docs/{page}" for page in nav_files()}
    assert {link.split("#")[0] for link in docs if link.endswith(".md")} >= pages - {
        "docs/index.md"
    }
    for link in links:
        if urlsplit(link).scheme:
            continue
        path, _, fragment = link.partition("#")
        assert (ROOT / path).is_file(), link
        if fragment:
            assert fragment in _parse(built(site, path.removeprefix("docs/"))).ids, link


def test_the_readme_is_short():
    lines = readme.text().splitlines()
    performance = readme.text().split("<!-- performance:", 1)[1].split("<!-- /performance -->")[0]
    # the tour and the links; the Performance table is made by benchmarks/readme.py
    assert len(lines) - len(performance.splitlines()) <= 252
    quickstart = readme.text().split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert quickstart.count("```") == 2  # one block: the two commands


def _article_text(html: str) -> str:
    """The prose of a built page's article: without code, scripts and the math spans."""
    article = html.split("<article", 1)[1].split("</article>", 1)[0]
    for pattern in (
        r"<pre\b.*?</pre>",
        r"<code\b.*?</code>",
        r'<(span|div) class="arithmatex">.*?</\1>',
    ):
        article = re.sub(pattern, "", article, flags=re.DOTALL)
    return article


def test_the_math_is_marked_for_mathjax(site):
    """Every $…$ and $$…$$ became an arithmatex element; no dollar sign is left in the prose
    (a formula the extension did not recognise would show as raw TeX)."""
    with_math = 0
    for page in nav_files():
        html = built(site, page).read_text()
        source = readme.text(readme.DOCS / page)
        prose = re.sub(r"```.*?```|`[^`]*`", "", source, flags=re.DOTALL)
        if "$" in prose:
            with_math += 1
            assert 'class="arithmatex"' in html, page
            assert "mathjax" in html.lower(), page
        assert "$" not in _article_text(html), page
    assert with_math >= 6


JARGON = re.compile(r"\bseeds? \d{3}\b|\bseed_\d{3}\b", re.IGNORECASE)


@pytest.mark.parametrize("path", readme.pages(), ids=readme.name)
def test_the_page_names_its_sources(path):
    """No private file numbers; a page that speaks of "the course" or "the book" says which."""
    text = readme.text(path)
    assert not JARGON.search(text), JARGON.search(text)
    if re.search(r"\bthe course\b", text):
        assert "Liu Er" in text, "which course?"
    if re.search(r"\bthe book\b", text):
        assert "PyTorch计算机视觉实战" in text or "Modern Computer Vision with PyTorch" in text, (
            "which book?"
        )


def test_the_jargon_check_can_fail():
    assert JARGON.search("as in seed 002")
    assert not JARGON.search("200 random points (seed 0)")


def _python_blocks() -> list[tuple[str, str]]:
    """The Python blocks of the site's pages that are scripts (api.md's `>>>` examples run
    as doctests in tests/test_api.py)."""
    return [
        (readme.name(path), block)
        for path, block in readme.all_blocks("python")
        if path != readme.README_PATH and ">>>" not in block
    ]


PYTHON_BLOCKS = _python_blocks()


def test_there_are_python_blocks_to_run():
    assert PYTHON_BLOCKS


@pytest.mark.parametrize("page, block", PYTHON_BLOCKS, ids=[p for p, _ in PYTHON_BLOCKS])
def test_python_block_prints_what_its_comments_say(page, block):
    """Each `print(...)  # text` line prints `text`."""
    expected = [
        line.split("  # ", 1)[1]
        for line in block.splitlines()
        if line.startswith("print(") and "  # " in line
    ]
    assert expected
    code = "\n".join(line.split("  # ", 1)[0] for line in block.splitlines())
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("error")
        exec(compile(code, page, "exec"), {})  # our own documentation, not user input
    assert out.getvalue().splitlines() == expected
