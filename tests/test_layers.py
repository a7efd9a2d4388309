"""The package's imports run one way: no import cycle anywhere in mgbench (cli/ included), counting
function-level imports too. The layers themselves are import-linter's contract (pyproject.toml,
`make test` runs lint-imports); a cycle inside one layer is this test's."""

from import_graph import cycles, graph


def test_no_import_cycle_in_the_package() -> None:
    edges, modules = graph()
    assert "mgbench.runner" in modules and "mgbench.cli" in modules
    assert cycles(edges) == []


def test_the_graph_sees_function_level_imports_and_skips_type_checking(tmp_path) -> None:
    package = tmp_path / "mgbench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from mgbench import b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mgbench.c\n"
                                  "from mgbench.a import f\n")
    (package / "c.py").write_text("from . import b\n")
    edges, _ = graph(tmp_path)
    assert set(edges["mgbench.b"]) == {"mgbench.a"} and set(edges["mgbench.c"]) == {"mgbench.b"}
    assert cycles(edges) == [["mgbench.a", "mgbench.b"]]
