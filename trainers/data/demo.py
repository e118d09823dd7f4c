"""The bundled demo corpus: real text that `make setup` installs (Debian packages) or that ships with Python.

| domain | group | source |
|---|---|---|
| code | Code | the Python standard library's own `.py` files |
| math-code | Math | the sympy package's source (in the virtual environment) |
| en-tech | EN | Python's reStructuredText documentation (python3.11-doc) |
| en-lit | EN | the King James Bible, one document per chapter (bible-kjv) |
| en-quotes | EN | fortunes, one document per fortune (fortunes) |
| latex | Math | PARI/GP's TeX manuals, one document per section (pari-doc) |
| zh-man | ZH | Chinese manual pages, roff markup removed (manpages-zh) |
| zh-poetry | ZH | Tang and Song poems and Chinese fortunes, ANSI colours removed (fortunes-zh) |
"""

from __future__ import annotations

import gzip
import importlib.util
import re
import shutil
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from trainers.data.errors import DataError
from trainers.data.sources import Source, read_text, stat_fingerprint

FORTUNES = Path("/usr/share/games/fortunes")
ZH_FORTUNES = ("tang300", "song100", "chinese")
PY_DOC = Path("/usr/share/doc/python3.11/html/_sources")
PARI_DOC = Path("/usr/share/pari/doc")
ZH_MAN = Path("/usr/share/man/zh_CN")
BIBLE_RANGE = "Genesis 1:1-Revelation 22:21"
SECTION = re.compile(r"(?m)^\\(?:section|subsec|subsubsec|chapter)\b")
ROFF_REQUEST = re.compile(r"(?m)^\.(?:\\\"|[A-Za-z]{1,3}\b)[^\n]*\n?")
ROFF_ESCAPE = re.compile(r"\\f[BIRP]|\\f\(..|\\s[+-]?\d+|\\\*\(..|\\\(..|\\[&|^%]|\\,|\\/")


def _need(path: Path, package: str, domain: str) -> None:
    if not path.exists():
        raise DataError(
            f"demo domain {domain!r} needs the Debian package {package} (run `make setup`)", where=str(path)
        )


def _fortune_split(text: str) -> Iterator[str]:
    yield from re.split(r"(?m)^%\s*$", text)


def python_stdlib() -> Source:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p
        for p in root.rglob("*.py")
        if not ({"site-packages", "test", "tests", "idlelib", "lib2to3"} & set(p.relative_to(root).parts))
    )
    return Source("code", "Code", lambda: (read_text(p) for p in files), lambda: stat_fingerprint(files), f"{root}")


def sympy_source() -> Source:
    spec = importlib.util.find_spec("sympy")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("demo domain 'math-code' needs the sympy package in the environment", where="sympy")
    root = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(p for p in root.rglob("*.py") if "tests" not in p.relative_to(root).parts)
    return Source(
        "math-code", "Math", lambda: (read_text(p) for p in files), lambda: stat_fingerprint(files), f"{root}"
    )


def python_docs() -> Source:
    _need(PY_DOC, "python3.11-doc", "en-tech")
    files = sorted(PY_DOC.rglob("*.rst.txt"))
    return Source("en-tech", "EN", lambda: (read_text(p) for p in files), lambda: stat_fingerprint(files), str(PY_DOC))


def bible() -> Source:
    exe = shutil.which("bible")
    if exe is None:
        raise DataError("demo domain 'en-lit' needs the Debian package bible-kjv (run `make setup`)", where="bible")

    def documents() -> Iterator[str]:
        out = subprocess.run([exe, "-f", BIBLE_RANGE], capture_output=True, text=True, check=True).stdout
        chapter: list[str] = []
        current = None
        for line in out.splitlines():
            m = re.match(r"^(\w+?)(\d+):(\d+)\s+(.*)$", line)
            if not m:
                if chapter and line.strip():
                    chapter[-1] += " " + line.strip()
                continue
            key = (m.group(1), m.group(2))
            if key != current and chapter:
                yield "\n".join(chapter)
                chapter = []
            current = key
            chapter.append(m.group(4))
        if chapter:
            yield "\n".join(chapter)

    data = [Path(exe), *(p for p in (Path("/usr/lib/bible.data"),) if p.exists())]
    return Source("en-lit", "EN", documents, lambda: [BIBLE_RANGE, stat_fingerprint(data)], "bible-kjv")


def fortunes() -> Source:
    _need(FORTUNES / "fortunes", "fortunes", "en-quotes")
    files = sorted(
        p
        for p in FORTUNES.iterdir()
        if p.is_file()
        and not p.is_symlink()
        and not p.suffix
        and p.name not in ZH_FORTUNES
        and p.with_name(p.name + ".dat").exists()
    )

    def documents() -> Iterator[str]:
        for p in files:
            yield from _fortune_split(read_text(p))

    return Source("en-quotes", "EN", documents, lambda: stat_fingerprint(files), str(FORTUNES))


def pari_tex() -> Source:
    _need(PARI_DOC, "pari-doc", "latex")
    files = sorted(PARI_DOC.glob("*.tex"))

    def documents() -> Iterator[str]:
        for p in files:
            text = read_text(p)
            starts = [m.start() for m in SECTION.finditer(text)] or [0]
            if starts[0] != 0:
                starts.insert(0, 0)
            for a, b in zip(starts, [*starts[1:], len(text)]):
                yield text[a:b]

    return Source("latex", "Math", documents, lambda: stat_fingerprint(files), str(PARI_DOC))


def roff_to_text(src: str) -> str:
    """Plain text of a man page: requests (.TH, .B, ...) dropped, font and character escapes removed."""
    lines = []
    for line in src.splitlines():
        if line.startswith((".", "'")):
            m = re.match(r"^\.(?:B|I|BR|BI|IB|IR|RB|RI|SH|SS|TP|IP)\s+(.*)$", line)
            if m:
                lines.append(m.group(1).replace('"', ""))
            continue
        lines.append(line)
    text = "\n".join(lines).replace("\\-", "-").replace("\\e", "\\")
    return ROFF_ESCAPE.sub("", text)


def zh_man() -> Source:
    _need(ZH_MAN, "manpages-zh", "zh-man")
    files = sorted(p for p in ZH_MAN.rglob("*.gz") if p.is_file())

    def documents() -> Iterator[str]:
        for p in files:
            try:
                raw = gzip.decompress(p.read_bytes()).decode("utf-8", errors="replace")
            except (OSError, EOFError):
                continue
            yield roff_to_text(raw)

    return Source("zh-man", "ZH", documents, lambda: stat_fingerprint(files), str(ZH_MAN))


def zh_poetry() -> Source:
    files = [FORTUNES / n for n in ZH_FORTUNES]
    for f in files:
        _need(f, "fortunes-zh", "zh-poetry")

    def documents() -> Iterator[str]:
        for p in files:
            yield from _fortune_split(read_text(p))

    return Source("zh-poetry", "ZH", documents, lambda: stat_fingerprint(files), "fortunes-zh")


DEMO_SOURCES = (python_stdlib, sympy_source, python_docs, bible, fortunes, pari_tex, zh_man, zh_poetry)


def demo_sources() -> list[Source]:
    return [make() for make in DEMO_SOURCES]
