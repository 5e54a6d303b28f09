"""The README tells the truth about the code's layout and API: its Layout tree names every
module, its public names are what ``trainprogress`` exports, and its "Report fields" table is
the Report's own field descriptions."""

import re
from pathlib import Path

import trainprogress
from trainprogress.report import field_docs
from trainprogress.sinks.jsonl import RECORD_KEYS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The README's text from the heading ``title`` to the next heading of any level."""
    start = README.index(f"\n{title}\n") + len(title) + 2
    end = re.compile(r"^#{1,6} ", re.M).search(README, start)
    return README[start:end.start() if end else len(README)]


def layout_tree_files() -> set[str]:
    """The .py files the Layout section's tree names under trainprogress/: an entry indented
    two spaces is in trainprogress/, four in the folder named by the last two-space entry."""
    block = section("## Layout").split("```")[1]
    files, folder, inside = set(), "", False
    for line in block.splitlines():
        if line.startswith("trainprogress/"):
            inside = True
            continue
        indent = len(line) - len(line.lstrip(" "))
        if not line.strip() or not inside:
            continue
        if indent == 0:
            break
        names = re.split(r"\s{2,}", line.strip())[0]
        for name in (n.strip() for n in names.split(",")):
            if name.endswith("/"):
                folder = name
            elif name.endswith(".py"):
                files.add(f"trainprogress/{folder if indent == 4 else ''}{name}")
    return files


def test_the_layout_tree_names_every_module_and_no_other():
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "trainprogress").rglob("*.py")}
    in_readme = layout_tree_files()
    assert sorted(on_disk - in_readme) == [], "modules missing from the README's Layout section"
    assert sorted(in_readme - on_disk) == [], "the README's Layout section names modules that do not exist"


def documented_public_names() -> list[str]:
    text = section("## Layout")
    listed = text[text.index("Public names:"):text.index("```")]
    return re.findall(r"`(\w+)`", listed)


def test_the_public_names_import_from_trainprogress_and_are_its_all():
    names = documented_public_names()
    assert len(names) >= 20
    for name in names:
        assert getattr(trainprogress, name) is not None, name
    assert sorted(names) == sorted(trainprogress.__all__)


def test_the_readmes_import_lines_work():
    imports = re.findall(r"^\+?(from trainprogress[\w.]* import \w+(?:, \w+)*)", README, flags=re.M)
    assert len(imports) >= 4
    for line in imports:
        if ".integrations." in line:  # needs the framework (the hf/lightning extras): tested in its own tests
            continue
        exec(line, {})


def readme_fields_table() -> str:
    return section("### Report fields").split("\n\n")[-2].strip()


def expected_fields_table() -> str:
    rows = ["| field | meaning |", "|---|---|"]
    for name, doc in field_docs().items():
        key = RECORD_KEYS.get(name)
        rows.append(f"| `{name}`{f' (JSONL `{key}`)' if key else ''} | {doc.replace('|', '/')} |")
    return "\n".join(rows)


def test_the_readmes_report_fields_table_is_the_reports_field_descriptions():
    expected = expected_fields_table()
    assert readme_fields_table() == expected, "paste this table into the README's 'Report fields':\n" + expected


# Sizes a reader can take in: no function longer than a screenful or two, no class past a
# few screens, in the library, the training code and the trainers.
MAX_FUNCTION_LINES, MAX_CLASS_LINES = 80, 250
SIZED_CODE = ("trainprogress", "trainkit", "train.py", "train_nanecho.py", "sample.py", "test_verbose_logging.py")


def test_no_function_over_80_lines_and_no_class_over_250():
    import ast

    too_long = []
    for name in SIZED_CODE:
        path = ROOT / name
        for file in [path] if path.is_file() else sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                limit = {ast.FunctionDef: MAX_FUNCTION_LINES, ast.AsyncFunctionDef: MAX_FUNCTION_LINES,
                         ast.ClassDef: MAX_CLASS_LINES}.get(type(node))
                lines = node.end_lineno - node.lineno + 1 if limit else 0
                if limit and lines > limit:
                    too_long.append(f"{file.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines (limit {limit})")
    assert not too_long, "split these:\n" + "\n".join(too_long)
