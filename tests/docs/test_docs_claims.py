"""What the documentation claims about the tool, checked against the tool.

(a) Every command-line option named by README.md, docs/*.md, the notebooks' text, a string in src/ (long
    options: help texts, docstrings and messages) or an error message in src/ (short options too) exists in
    the parser of some command. Options of other tools, named on purpose, are listed in OTHER_TOOLS with
    the tool that must be named beside them; an option of one of our benchmark scripts must be one that
    script's parser adds.
(b) Every sentence of README.md and docs/*.md that says something is not supported or refused is listed in
    REFUSALS with the tests that prove the tool refuses it: a new such sentence without a backing test, a
    listed sentence that is gone, or a listed test that pytest does not collect fails.

Refusals that no other test checked are proven here (``test_a_model_no_sip_polynomial_reproduces_is_refused``).
"""
import argparse
import ast
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# an option: after the start of a line, a space, an opening bracket or quote, a separator, or one backtick
# (not the closing pair of ``name``-suffix); never in the middle of a word (2-D, x-y, ``factor``-px)
OPTION = re.compile(r"(?:^|(?<=[\s(\[{'\"|,;=])|(?<=(?<!`)`))(--?[a-z][a-z0-9]*(?:-[a-z0-9]+)*)(?![\w-])", re.M)

# options of other tools named on purpose: option -> the tools one of which must be named beside it (same
# line in code, same paragraph in prose, same string in src/)
OTHER_TOOLS = {
    "-e": ("pip install",),  # pip's editable install, in the install commands
    "-f": ("conda env create",  # conda's environment file, in docs/index.md's install commands
           "ulimit"),  # the shell's file-size limit, named by the 'file too large' error message
    "-tps": ("gdalwarp",),  # gdalwarp's thin-plate-spline transformer, to warp a GCP georeference
    "-et": ("gdalwarp",),  # gdalwarp's error threshold (-et 0: the exact transformer)
    "--strict": ("mkdocs build",),  # mkdocs' strict build of the documentation
    "-m": ("pytest -m",),  # pytest's marker expression, in the development commands
    "--output-transform-json": ("coregix",),  # coregix's transform file, compared with ours in concepts.md
}
BENCHMARK = re.compile(r"benchmarks/[\w/]+\.py")


def _parser_options():
    from rastalign.cli import demo, fits, vhr

    def walk(parser):
        for action in parser._actions:
            yield from action.option_strings
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():  # rastalign demo, apply and stack
                    yield from walk(sub)

    parsers = (vhr.build_parser(), fits.build_parser(), fits.build_simple_parser(), demo.build_parser())
    return {o for p in parsers for o in walk(p)}


@pytest.fixture(scope="module")
def known():
    options = _parser_options()
    assert {"--moving-image", "--correction", "--model", "--from-list", "-tf", "--template-ext", "-v"} <= options
    return options


def _normal(option):
    return "-v" if re.fullmatch(r"-v+", option) else option  # -vv is -v counted twice


def _benchmark_adds(context, option):
    """The option is one that a benchmark script named in ``context`` adds to its own parser."""
    for script in BENCHMARK.findall(context):
        path = ROOT / script
        if path.is_file() and re.search(rf"add_argument\(\s*[\"']{re.escape(option)}[\"']", path.read_text()):
            return True
    return False


def _unknown(option, context, known):
    option = _normal(option)
    if option in known:
        return False
    if any(tool in context for tool in OTHER_TOOLS.get(option, ())):
        return False
    return not _benchmark_adds(context, option)


def _doc_mentions(text):
    """``(line number, option, context)``: the context is the line inside a code block, else its paragraph."""
    lines = text.splitlines()
    fence, para_start, out = False, 0, []
    paragraphs = {}
    for i, line in enumerate(lines):  # paragraph of each prose line: the block between blank lines / fences
        if line.lstrip().startswith("```"):
            fence = not fence
            para_start = i + 1
            continue
        if not line.strip():
            para_start = i + 1
        paragraphs[i] = (fence, para_start)
    for i, line in enumerate(lines):
        if i not in paragraphs:
            continue
        fence, start = paragraphs[i]
        if fence:
            context = line
        else:
            end = i
            while end + 1 < len(lines) and lines[end + 1].strip() and not lines[end + 1].lstrip().startswith("```"):
                end += 1
            context = "\n".join(lines[start:end + 1])
        out += [(i + 1, m.group(1), context) for m in OPTION.finditer(line)]
    return out


def _notebook_text(path):
    import json

    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def test_the_documents_name_only_options_that_exist(known):
    bad = []
    for path in DOCS:
        bad += [f"{path.name}:{n}: {o}" for n, o, ctx in _doc_mentions(path.read_text(encoding="utf-8"))
                if _unknown(o, ctx, known)]
    for path in NOTEBOOKS:
        bad += [f"{path.name} (markdown): {o}" for _, o, ctx in _doc_mentions(_notebook_text(path))
                if _unknown(o, ctx, known)]
    assert not bad, "options no parser has (fix the text, or list another tool's option in OTHER_TOOLS):\n" + \
        "\n".join(bad)


def _strings(tree):
    """``(node, text, is_error_message)`` for every string literal (an f-string with its fields as 'X')."""
    messages = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            for arg in node.exc.args:
                messages.update(id(n) for n in ast.walk(arg))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)
        else:
            continue
        yield node, text, id(node) in messages


def test_the_code_names_only_options_that_exist(known):
    """Long options anywhere in src/ (help, docstrings, messages), short ones in error messages (elsewhere a
    short option is too easily maths: ``[[a, -b], [b, a]]``)."""
    bad = []
    for path in sorted((ROOT / "src" / "rastalign").rglob("*.py")):
        for node, text, message in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            for m in OPTION.finditer(text):
                o = m.group(1)
                if (o.startswith("--") or message) and _unknown(o, text, known):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {o}")
    assert not bad, "options no parser has:\n" + "\n".join(sorted(set(bad)))


def test_the_option_finder_finds_options_and_nothing_else(known):
    found = [m.group(1) for m in OPTION.finditer(
        "use `-v`, (`--chunks 2048`), a 2-D image, ``factor``-px blocks, |---|, - item, x-y, "
        "gdalwarp -tps -et 0, --no-output-on-moving-grid.")]
    assert found == ["-v", "--chunks", "-tps", "-et", "--no-output-on-moving-grid"]
    assert _unknown("--no-such-option", "", known) and not _unknown("-vv", "", known)
    assert _unknown("-tps", "warp it with GDAL", known) and not _unknown("-tps", "gdalwarp -tps", known)
    assert not _unknown("--only", "(`benchmarks/stack.py --only fits`)", known)
    assert _unknown("--only", "(`benchmarks/scale.py --only fits`)", known)


# --- (b) refusals ------------------------------------------------------------------------------------

REFUSAL = re.compile(r"\bnot\s+(?:yet\s+)?supported\b|\bunsupported\b|\brefused\b|\brefuses\b", re.I)

GEOREF_FIELD = "tests/sinks/test_georef.py::test_a_field_gcps_cannot_hold_and_unsuitable_outputs_are_refused"
WCS_NO_TEMPLATE_WCS = "tests/sinks/test_wcs_correction.py::test_a_template_without_wcs_is_refused_in_one_line"
WCS_NO_SIP = "tests/docs/test_docs_claims.py::test_a_model_no_sip_polynomial_reproduces_is_refused"

# (file, an excerpt of the sentence) -> the tests that prove the refusal it states
REFUSALS = {
    ("README.md", "`--max-error-px` refuses an alignment whose p95 exceeds it"):
        ["tests/pipelines/test_predicted_error.py::test_max_error_px_refuses_with_the_report_written",
         "tests/pipelines/test_predicted_error.py::test_a_fits_pair_states_its_error_on_the_sky"],
    ("README.md", "else refused, naming `--correction resample`"): [GEOREF_FIELD],
    ("README.md", "a template without a celestial WCS, or a model no SIP of order <= 5 reproduces to 0.05 px, "
                  "is refused"): [WCS_NO_TEMPLATE_WCS, WCS_NO_SIP],
    ("concepts.md", "`out.png` is refused rather than written as a GeoTIFF"):
        ["tests/sinks/test_sinks.py::test_output_suffix_must_match_the_format[out.png-None]"],
    ("concepts.md", "a field the GCPs cannot hold is refused"): [GEOREF_FIELD],
    ("concepts.md", "a template without a celestial WCS, or a model that no SIP polynomial of order <= 5 "
                    "reproduces to 0.05 px, is refused"): [WCS_NO_TEMPLATE_WCS, WCS_NO_SIP],
    ("model-format.md", "anything else is refused as not a model"):
        ["tests/pipelines/test_reliability.py::test_malformed_model_json[wrong_format]"],
    ("model-format.md", "a file newer than the reader is refused"):
        ["tests/pipelines/test_reliability.py::test_malformed_model_json[future_version]"],
}

UNIT_START = re.compile(r"^\s*(?:[-*+] |\d+\. |\||#|!!!)")


def _units(text):
    """Paragraphs, list items, table rows and headings of a markdown text, code blocks left out."""
    units, cur, fence = [], [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence = not fence
            units.append(cur)
            cur = []
            continue
        if fence:
            continue
        if not line.strip() or UNIT_START.match(line):
            units.append(cur)
            cur = []
        if line.strip():
            cur.append(line.strip())
    units.append(cur)
    return [" ".join(u) for u in units if u]


def _sentences(text):
    return [s for u in _units(text) for s in re.split(r"(?<=[.!?])\s+(?=[A-Z`(\[*_])", u)]


def _refusal_sentences():
    return [(path.name, s) for path in DOCS for s in _sentences(path.read_text(encoding="utf-8"))
            if REFUSAL.search(s)]


def test_every_refusal_the_documents_state_is_listed_with_its_tests():
    flagged = _refusal_sentences()
    unlisted = [f"{name}: {s}" for name, s in flagged
                if sum(name == f and excerpt in s for f, excerpt in REFUSALS) != 1]
    assert not unlisted, ("sentences that say something is refused or not supported, without exactly one "
                          "entry in REFUSALS (add the tests that prove it):\n" + "\n".join(unlisted))
    gone = [key for key in REFUSALS if sum(name == key[0] and key[1] in s for name, s in flagged) != 1]
    assert not gone, f"REFUSALS entries that match no refusal sentence (or several): {gone}"
    assert all(REFUSALS.values())


def test_the_sentence_finder():
    text = ("# Title\n\nA thing is refused. Another is fine.\n\n```bash\nx is refused\n```\n\n"
            "- an item that is not supported yet\n- another\n\n| a | is refused |\n")
    got = [s for s in _sentences(text) if REFUSAL.search(s)]
    assert got == ["A thing is refused.", "- an item that is not supported yet", "| a | is refused |"]


@pytest.mark.slow  # a pytest subprocess collects the listed test files
def test_the_tests_behind_the_refusals_exist_and_are_collected():
    ids = sorted({t for tests in REFUSALS.values() for t in tests})
    files = sorted({t.split("::")[0] for t in ids})
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    collected = set(run.stdout.split())
    missing = [t for t in ids if t not in collected]
    assert not missing, f"listed in REFUSALS but not collected: {missing}\n{run.stdout[-2000:]}{run.stderr[-2000:]}"


# --- refusals the rest of the suite did not prove -------------------------------------------------------

def test_a_model_no_sip_polynomial_reproduces_is_refused():
    """``--correction wcs`` (CLI, stacks and the accessor all call ``fit_wcs``): a residual field that no SIP
    polynomial of order <= 5 reproduces to 0.05 px is refused, naming ``--correction resample``."""
    from astropy.wcs import WCS

    from rastalign.errors import OutputError
    from rastalign.geometry.affine import IDENTITY
    from rastalign.model.model import AlignmentModel
    from rastalign.model.residual import SplineField
    from rastalign.sinks.wcs import fit_wcs

    template = WCS(naxis=2)
    template.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    template.wcs.crval = [3.58, -30.4]
    template.wcs.crpix = [128.5, 128.5]
    template.wcs.cd = [[-1.0e-5, 0.0], [0.0, 1.0e-5]]
    rng = np.random.default_rng(2)
    rough = SplineField((0.0, 0.0), (8.0, 8.0), (33, 33), rng.normal(0, 2.0, (35, 35)), rng.normal(0, 2.0, (35, 35)))
    model = AlignmentModel(IDENTITY.copy(), rough, output_shape=(256, 256), moving_shape=(256, 256))
    with pytest.raises(OutputError, match=r"order <= 5 reproduces the model only to .* use --correction resample"):
        fit_wcs(model, (256, 256), template)
