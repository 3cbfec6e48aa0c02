"""mkdocs hook: generate the CLI reference (from the argparse parsers), the notebook pages
(from notebooks/*.ipynb, stored without outputs) and the benchmark tables (from
benchmarks/results/*.json) at build time, so the docs can never drift from the code."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- CLI reference
def _parsers():
    from rastalign.cli import demo, fits, vhr

    yield "vhr-align-image-pair", vhr.build_parser()
    yield "align-fits", fits.build_parser()
    yield "align-fits-simple", fits.build_simple_parser()
    top = demo.build_parser()
    yield "rastalign", top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"rastalign {name}", sub


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _option_rows(parser):
    rows = []
    for a in parser._actions:
        if isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        names = ", ".join(f"`{s}`" for s in a.option_strings) or f"`{a.dest}` (positional)"
        if a.choices is not None and not isinstance(a.choices, range):
            kind = " \\| ".join(map(str, a.choices))
        elif a.nargs == 0:
            kind = "flag"
        else:
            kind = a.metavar or (a.type.__name__.strip("_") if a.type else "text")
        default = "" if a.default in (None, argparse.SUPPRESS) or a.nargs == 0 and a.default is False else a.default
        required = " **(required)**" if a.required else ""
        help_ = (a.help or "").replace("%(default)s", str(a.default)).replace("%%", "%")
        rows.append(f"| {names}{required} | {_cell(kind)} | {_cell(default)} | {_cell(help_)} |")
    return rows


def cli_page() -> str:
    out = ["# Command-line reference", "",
           "Generated at build time from the argparse parsers (`rastalign.cli.vhr.build_parser`, "
           "`rastalign.cli.fits.build_parser` / `build_simple_parser`, `rastalign.cli.demo.build_parser`).",
           "Every command prints one JSON object on stdout on success, and one line "
           "`<prog>: error: <cause>` on stderr with a non-zero exit status on failure.", ""]
    for prog, p in _parsers():
        out += [f"## `{prog}`", "", p.description or "", "", "```text", p.format_usage().strip(), "```", "",
                "| option | type / choices | default | meaning |", "|---|---|---|---|", *_option_rows(p), ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- notebooks
def notebook_page(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    out = [f"!!! note \"Notebook `notebooks/{path.name}`\"",
           f"    Rendered without outputs; run it with `jupyter lab notebooks/{path.name}` (it makes its own data, "
           "or uses `../shared/data` when present).", ""]
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            out += [src, ""]
        elif cell["cell_type"] == "code":
            out += ["```python", src, "```", ""]
    return "\n".join(out)


# ----------------------------------------------------------------------------- benchmarks
def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return _cell(v)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            out[f"{prefix}{k}"] = v
    return out


def _table(rows, first=None):
    cols = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    head = ([first] if first else []) + cols
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items() if isinstance(rows, dict) else ((None, r) for r in rows):
        vals = ([_cell(name)] if first else []) + [_fmt(r.get(c, "")) for c in cols]
        lines.append("| " + " | ".join(vals) + " |")
    return lines


def benchmarks_page() -> str:
    out = ["# Benchmarks", "",
           "Tables generated at build time from `benchmarks/results/*.json` (written by the scripts in "
           "`benchmarks/`; rerun them to refresh, e.g. `python benchmarks/vhr_pair.py --sizes 2048 8192`).", ""]
    files = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    if not files:
        return "\n".join(out + ["No benchmark results are stored yet."])
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        out += [f"## `{f.stem}`", ""]
        if isinstance(data, list):
            out += _table([_flat(r) for r in data])
        elif isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()):
            out += _table({k: _flat(v) for k, v in data.items()}, first="case")
        elif isinstance(data, dict):
            lists = {k: v for k, v in data.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
            scalars = _flat({k: v for k, v in data.items() if k not in lists})
            out += ["| quantity | value |", "|---|---|", *(f"| {k} | {_fmt(v)} |" for k, v in scalars.items())]
            for k, v in lists.items():
                out += ["", f"**{k}**", "", *_table([_flat(r) for r in v])]
        out.append("")
    return "\n".join(out)


# ----------------------------------------------------------------------------- hook
def on_files(files, config):
    files.append(File.generated(config, "cli.md", content=cli_page()))
    files.append(File.generated(config, "benchmarks.md", content=benchmarks_page()))
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(File.generated(config, f"notebooks/{nb.stem}.md", content=notebook_page(nb)))
    return files
