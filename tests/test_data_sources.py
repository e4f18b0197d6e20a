"""Sources: code from folders / git checkouts / the default roots, bad input counted by reason,
jsonl with malformed lines reported by file and line, `datasets` on a local fixture."""

import importlib.metadata as md
import json
import subprocess
import sysconfig
from pathlib import Path

import pytest

from qcoder_lib.data.sources import (
    DOC_EXTENSIONS,
    Repo,
    SourceStats,
    as_repos,
    code_documents,
    dataset_documents,
    default_code_repos,
    doc_files,
    docs_documents,
    docstring_prose,
    jsonl_documents,
    language_of,
    lone_surrogate,
    package_descriptions,
    read_document,
    read_jsonl,
    read_text_file,
    repo_from_folder,
    site_package_repos,
    stdlib_repo,
    strip_code,
    text_documents,
)
from qcoder_lib.io import resource_path


@pytest.fixture
def messy_repo(tmp_path):
    root = tmp_path / "messy"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "good.py").write_text("def f(x):\n    return x + 1\n")
    (root / "web.js").write_text("export const two = () => 2;\n")
    (root / "notes.md").write_text("# not code\n")
    (root / "pkg" / "binary.py").write_bytes(b"abc\x00\x01\x02def")
    (root / "pkg" / "latin1.py").write_bytes("# caf\xe9\nx = 1\n".encode("latin-1"))
    (root / "pkg" / "huge.py").write_text("x = 1\n" * 50_000)
    (root / "pkg" / "empty.py").write_text("   \n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "cached.py").write_text("x = 2\n")
    return root


def test_code_folder_counts_bad_input_by_reason(messy_repo):
    stats = SourceStats()
    docs = list(code_documents([messy_repo], max_bytes=100_000, stats=stats))
    assert {(d.path, d.language, d.repo) for d in docs} == {
        ("pkg/good.py", "python", "messy"),
        ("web.js", "javascript", "messy"),
    }
    assert dict(stats.skipped) == {"binary": 1, "undecodable": 1, "too_large": 1, "empty": 1}
    assert stats.examples["binary"] == ["messy/pkg/binary.py"]
    assert stats.seen == 6 and stats.kept == 2
    assert "skipped: too_large" in stats.table()


def test_read_text_file_never_reads_past_the_cap(tmp_path):
    p = tmp_path / "big.txt"
    p.write_text("a" * 1000)
    assert read_text_file(p, max_bytes=999) == (None, "too_large")
    assert read_text_file(p, max_bytes=1000)[0] == "a" * 1000


def test_git_checkout_reads_tracked_files_only(tmp_path):
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "tracked.py").write_text("print('tracked')\n")
    (root / "untracked.py").write_text("print('untracked')\n")
    git = ["git", "-C", str(root), "-c", "user.email=a@b.c", "-c", "user.name=t"]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "tracked.py"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "x"], check=True)
    assert [d.path for d in code_documents([root])] == ["tracked.py"]


def test_default_roots_are_stdlib_then_packages_with_relative_paths():
    docs = list(code_documents(max_files=30, max_files_per_repo=10))
    assert docs[0].repo == "python-stdlib"
    assert len({d.repo for d in docs}) >= 3
    assert all(not d.path.startswith("/") for d in docs)
    names = {r.name for r in site_package_repos()}
    assert {"numpy", "datasets", "datatrove"} <= names


def test_shards_partition_the_files(messy_repo):
    whole = {d.path for d in code_documents([messy_repo], max_bytes=100_000)}
    parts = [
        {d.path for d in code_documents([messy_repo], max_bytes=100_000, shard=(r, 2))}
        for r in range(2)
    ]
    assert parts[0] | parts[1] == whole and not parts[0] & parts[1]


def test_malformed_jsonl_lines_reported_with_file_and_line():
    stats = SourceStats()
    docs = list(jsonl_documents(resource_path("malformed.jsonl"), stats=stats))
    assert [d.path for d in docs] == ["src/mathutil.py", "lib/greet.js", "cmd/hello/main.go"]
    assert stats.skipped["malformed_json"] == 3
    where = [e.split(" ")[0] for e in stats.examples["malformed_json"]]
    assert where == ["malformed.jsonl:2", "malformed.jsonl:4", "malformed.jsonl:8"]
    assert stats.examples["no_content"] == ["malformed.jsonl:5"]


def test_read_jsonl_reports_invalid_utf8(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    stats = SourceStats()
    assert [i for i, _ in read_jsonl(p, stats=stats)] == [1]
    assert stats.examples["malformed_json"] == ["bad.jsonl:2 (not UTF-8)"]


def test_jsonl_lone_surrogate_escape_is_skipped_with_file_and_line(tmp_path):
    # issue 19 item 11: '"\\ud800"' is valid JSON but no UTF-8 text can hold it
    p = tmp_path / "sur.jsonl"
    p.write_text('{"content": "a"}\n{"content": "x\\ud800y"}\n{"content": "b", '
                 '"tags": ["ok", "\\udfff"]}\n{"content": "c"}\n', encoding="ascii")
    stats = SourceStats()
    docs = list(jsonl_documents(p, stats=stats))
    assert [d.text for d in docs] == ["a", "c"] and stats.seen == 4
    assert stats.examples["malformed_json"] == [
        "sur.jsonl:2 (lone surrogate in 'content')", "sur.jsonl:3 (lone surrogate in 'tags[1]')"]


def test_jsonl_cr_line_endings_and_bom_read_every_record(tmp_path):
    recs = [{"content": f"doc {i}", "path": f"f{i}.py"} for i in range(5)]
    body = [json.dumps(r) for r in recs]
    cases = {"cr": "\r".join(body) + "\r", "crlf": "\r\n".join(body),
             "mixed": body[0] + "\r" + body[1] + "\n" + "\r\n".join(body[2:])}
    for name, text in cases.items():
        (tmp_path / f"{name}.jsonl").write_bytes(text.encode())
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + "\n".join(body).encode())
    for name in [*cases, "bom"]:
        stats = SourceStats()
        got = [rec for _, rec in read_jsonl(tmp_path / f"{name}.jsonl", stats=stats)]
        assert got == recs and not stats.skipped, name
    lines = [i for i, _ in read_jsonl(tmp_path / "cr.jsonl")]
    assert lines == [1, 2, 3, 4, 5]  # line numbers count CR-ended lines too


def test_lone_surrogate_finds_the_first_one():
    assert lone_surrogate("plain ascii and é ✓") is None
    assert lone_surrogate("ab\ud800c\udfff") == 2
    assert lone_surrogate(b"a\xff".decode("utf-8", "surrogateescape")) == 1


def test_dataset_documents_max_docs_counts_its_own_documents():
    stats = SourceStats()
    stats.kept = 100  # e.g. shared with another source that already yielded 100 documents
    docs = list(dataset_documents(str(resource_path("code_stack_sample.jsonl")), max_docs=2,
                                  stats=stats))
    assert len(docs) == 2 and stats.kept == 102


def test_dataset_documents_on_a_local_stack_style_fixture():
    docs = list(dataset_documents(str(resource_path("code_stack_sample.jsonl"))))
    assert len(docs) == 6
    assert {d.language for d in docs} == {"python", "javascript", "go", "rust", "c", "java"}
    assert docs[0].repo == "example/mathutil" and docs[0].source == "code"


def test_docs_and_text_sources():
    docs = list(docs_documents(max_docs=5))
    assert len(docs) == 5 and all(d.source == "docs" and len(d.text) >= 200 for d in docs)
    text = list(text_documents(max_docs=3, include_packages=False))
    assert [d.path for d in text] == [
        "text/01_reading_code.txt",
        "text/02_why_tests.txt",
        "text/03_data_pipelines.txt",
    ]


def test_strip_code_and_docstring_prose():
    md = "Intro text.\n\n```python\nx = 1\n```\n\nMore text.\n\n    indented = code\n"
    assert strip_code(md) == "Intro text.\n\nMore text."
    src = 'def f():\n    """' + "Explains f in words. " * 5 + '\n\n    >>> f()\n    1\n    """\n'
    prose = docstring_prose(src)
    assert "Explains f" in prose and ">>>" not in prose
    assert docstring_prose("def broken(:") == ""


def test_language_of_uses_the_extension_case_insensitively():
    assert language_of("pkg/mod.py") == "python" and language_of(Path("Main.JAVA")) == "java"
    assert language_of("lib/x.tar.gz") is None and language_of("Makefile") is None
    assert language_of("README.md") is None  # not code
    assert language_of("README.md", DOC_EXTENSIONS) == "markdown"


def test_stdlib_and_default_repos():
    std = stdlib_repo()
    assert std.name == "python-stdlib" and (std.root / "os.py").is_file()
    assert std.root == Path(sysconfig.get_paths()["stdlib"])
    repos = default_code_repos()
    assert repos[0] == std
    assert [r.name for r in repos[1:]] == [r.name for r in site_package_repos()]


def test_as_repos_and_read_document(tmp_path, messy_repo):
    assert as_repos(messy_repo) == [Repo("messy", messy_repo)]
    one = Repo("one", messy_repo)
    assert as_repos([one, str(messy_repo)]) == [one, Repo("messy", messy_repo)]
    assert as_repos(None)[0].name == "python-stdlib"
    stats = SourceStats()
    doc = read_document(one, "web.js", "code", "javascript", stats, 1000)
    assert doc.text == (messy_repo / "web.js").read_text() and doc.repo == "one"
    assert read_document(one, "web.js", "code", "javascript", stats, 5) is None  # too large
    assert stats.seen == 2 and stats.kept == 1 and stats.examples["too_large"] == ["one/web.js"]


def test_one_extension_table_for_the_sources_and_syntax_spans():
    from qcoder_lib.data.sources import CODE_EXTENSIONS
    from qcoder_lib.syntax_spans import EXTENSIONS, language_for_path

    assert language_of("Python.h") == "c"  # the corpus label (Linguist's default for .h)
    assert language_for_path("Python.h") == "cpp"  # parsed with the C++ grammar
    for ext, grammar in EXTENSIONS.items():  # every grammar choice follows the one table
        assert grammar == ("cpp" if CODE_EXTENSIONS[ext] == "c" else CODE_EXTENSIONS[ext])


def test_repo_from_folder_names_it_and_rejects_non_folders(tmp_path, messy_repo):
    assert repo_from_folder(messy_repo) == Repo("messy", messy_repo)
    assert repo_from_folder(messy_repo, "custom").name == "custom"
    one = Repo("one", messy_repo, files=["web.js"])  # restricted to listed files
    assert [d.path for d in code_documents([one])] == ["web.js"]
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        repo_from_folder(tmp_path / "missing_dir")
    with pytest.raises(FileNotFoundError, match="web.js"):
        repo_from_folder(messy_repo / "web.js")


def test_package_descriptions_are_installed_readmes_by_name():
    stats = SourceStats()
    docs = list(package_descriptions(stats=stats, min_chars=200))
    names = [d.repo for d in docs]
    assert names == sorted(names, key=str.lower) and len(names) == len(set(names))
    assert all(
        d.source == "docs" and d.path == "README" and len(d.text.strip()) >= 200 for d in docs
    )
    dt = next(d for d in docs if d.repo == "datatrove")
    meta = md.metadata("datatrove")  # the README is the long description or the body
    assert dt.text in (meta.get("Description"), meta.get_payload())
    assert dt.meta["version"] == md.version("datatrove")
    assert stats.seen == stats.kept + stats.skipped["no_description"]


def test_doc_files_keep_docs_and_count_bad_ones(tmp_path):
    root = tmp_path / "proj"
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("# Project\n\nUse it.\n")
    (root / "docs" / "guide.rst").write_text("Guide\n=====\n")
    (root / "docs" / "notes.txt").write_text("plain notes\n")
    (root / "docs" / "blob.txt").write_bytes(b"\x00\x01")
    (root / "main.py").write_text("print(1)\n")  # code, not a doc
    stats = SourceStats()
    docs = list(doc_files([root], stats=stats))
    assert {(d.path, d.language) for d in docs} == {
        ("README.md", "markdown"),
        ("docs/guide.rst", "restructuredtext"),
        ("docs/notes.txt", "text"),
    }
    assert all(d.source == "docs" and d.repo == "proj" for d in docs)
    assert stats.examples == {"binary": ["proj/docs/blob.txt"]}
    assert len(list(doc_files([root], max_files=2))) == 2
