"""Reliability: the bad-input matrix, no silent failure, faults while writing, determinism, security.

Every bad case runs through the command line (``rastalign.cli.vhr.main``, or
``python -m`` in a subprocess where the exit status, permissions or resource limits
matter) *and* through the Python API (``rastalign.align_image_pair``), and checks the
contract: a non-zero exit with one line ``<prog>: error: <cause>`` (no traceback
without ``-v``), a :class:`RastalignError` from the API, nothing at the output path,
no temporary file left in the output folder, and inputs byte-identical.
"""
import contextlib
import hashlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import write_tif
from rastalign import align_image_pair
from rastalign.cli.demo import main as rastalign_main
from rastalign.cli.fits import main as fits_main
from rastalign.cli.vhr import main as vhr_main
from rastalign.errors import AlignmentError, InputError, OutputError, RastalignError
from rastalign.sinks.atomic import TMP_TAG
from rastalign import load_model, save_model
from rastalign.model.model import AlignmentModel
from rastalign.testing.pairs import make_pair, write_pair

SRC = Path(__file__).resolve().parents[2] / "src" / "rastalign"
SETPRIV = shutil.which("setpriv")
IS_ROOT = os.geteuid() == 0


# ------------------------------------------------------------------------------------ helpers
def sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def hashes(paths):
    return {str(p): sha(p) for p in paths if p is not None and Path(p).is_file()}


def leftovers(folder):
    """Temporary files of rastalign in ``folder`` (output temp names and work folders)."""
    return [p for p in os.listdir(folder) if TMP_TAG in p or p.startswith("rastalign_")]


def assert_one_line(err, prog, match):
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"{prog}: error: "), lines[0]
    assert re.search(match, lines[0]), lines[0]


def assert_clean(output, before, existed=()):
    """Nothing at the output (nor its model) unless it was there before, no temp files beside it,
    inputs (and anything that existed at the output paths) untouched."""
    output = Path(output)
    for p in (output, Path(f"{output}.model.json")):
        if str(p) not in existed:
            assert not p.exists(), f"partial output left at {p}"
    if output.parent.is_dir():
        assert not leftovers(output.parent), leftovers(output.parent)
    assert hashes(before) == before


def refuse(capsys, moving, fixed, output, match, extra=(), api=None, code=None, exc=RastalignError):
    """Run one bad case through the CLI and the API and check the whole contract."""
    inputs = [p for p in (moving, fixed) if p is not None]
    existed = {str(p) for p in (Path(output), Path(f"{output}.model.json")) if p.exists()}
    before = hashes(inputs + [output, f"{output}.model.json"])
    argv = ["--moving-image", moving, "--fixed-image", fixed, "--output-image", output, *extra]
    rc = vhr_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert rc != 0 and (code is None or rc == code), (rc, err)
    assert out == ""
    assert_one_line(err, "vhr-align-image-pair", match)
    assert_clean(output, before, existed)
    with pytest.raises(exc, match=match):
        align_image_pair(str(moving), str(fixed), str(output), **(api or {}))
    assert_clean(output, before, existed)


def run_module(module, args, timeout=120, env=None, preexec_fn=None, prefix=()):
    cmd = [*prefix, sys.executable, "-m", module, *[str(a) for a in args]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, preexec_fn=preexec_fn)


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    moving, fixed, truth = write_pair(d, (256, 256), rotation_deg=0.2, shift=(3.3, -2.1), bands=2, seed=3)
    return Path(moving), Path(fixed)


@pytest.fixture(scope="module")
def bad(tmp_path_factory, pair):
    """Every kind of bad input file, written once."""
    d = tmp_path_factory.mktemp("bad")
    moving, fixed = pair
    f = {}
    (d / "empty.tif").write_bytes(b"")
    f["empty"] = d / "empty.tif"
    data = moving.read_bytes()
    (d / "truncated.tif").write_bytes(data[: len(data) // 2])
    f["truncated"] = d / "truncated.tif"
    (d / "notes.txt").write_text("not a raster\n" * 50)
    f["text"] = d / "notes.txt"
    (d / "random.tif").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    f["random_bytes"] = d / "random.tif"
    (d / "folder.tif").mkdir()
    f["folder"] = d / "folder.tif"
    p = make_pair((256, 256), seed=2)
    f["far"] = write_tif(d / "far.tif", p.fixed, transform=(0.5, 0, 900000.0, 0, -0.5, 5800000.0))
    f["other_crs"] = write_tif(d / "crs.tif", p.fixed, crs="EPSG:32634")
    f["no_crs"] = write_tif(d / "nocrs.tif", p.fixed, crs=None)
    f["const"] = write_tif(d / "const.tif", np.full((1, 256, 256), 7, np.uint16))
    f["all_nodata"] = write_tif(d / "allnd.tif", np.zeros((1, 256, 256), np.uint16), nodata=0)
    f["all_nan"] = write_tif(d / "nan.tif", np.full((1, 256, 256), np.nan, np.float32))
    f["all_inf"] = write_tif(d / "inf.tif", np.full((1, 256, 256), np.inf, np.float32))
    mostly = np.zeros((1, 256, 256), np.uint16)
    mostly[0, :90, :] = make_pair((256, 256), rotation_deg=0.2, shift=(3.3, -2.1), seed=3).moving[0, :90, :]
    mostly[mostly == 0] = 1
    mostly[0, 90:, :] = 0
    f["partly_valid"] = write_tif(d / "partly.tif", mostly, nodata=0)  # ~35% valid
    rng = np.random.default_rng(5)
    f["noise"] = write_tif(d / "noise.tif", rng.integers(1, 4000, (1, 256, 256)).astype(np.uint16))
    other = write_pair(d / "unrelated", (256, 256), seed=99)[0]
    f["unrelated"] = other
    with __import__("rasterio").open(fixed) as ds:
        img = ds.read(1)
    tiles = img.reshape(8, 32, 8, 32).transpose(0, 2, 1, 3).reshape(64, 32, 32)
    tiles = tiles[np.random.default_rng(1).permutation(64)]  # real texture, inconsistent positions
    shuffled = tiles.reshape(8, 8, 32, 32).transpose(0, 2, 1, 3).reshape(1, 256, 256)
    f["shuffled"] = write_tif(d / "shuffled.tif", shuffled, nodata=0)
    return f


# ------------------------------------------------------------------------------------ the matrix
INPUT_CASES = {
    # case: (moving key or None (= good moving), fixed key or None, message, extra CLI args, API kwargs)
    "missing_moving": ("MISSING", None, "file not found", (), None),
    "missing_fixed": (None, "MISSING", "file not found", (), None),
    "empty": ("empty", None, "file is empty", (), None),
    "truncated": ("truncated", None, r"cannot read .*truncated\.tif \(truncated or corrupt\?\)", (), None),
    "non_raster_text": (None, "text", "not a readable raster", (), None),
    "non_raster_bytes": ("random_bytes", None, "not a readable raster", (), None),
    "folder": ("folder", None, r"not a raster file \(a folder\)", (), None),
    "no_overlap": (None, "far", "do not overlap", (), None),
    "under_min_valid_fraction": ("partly_valid", None, "too little valid data", ("--min-valid-fraction", "0.5"),
                                 {"min_valid_fraction": 0.5}),
    "different_crs_far_apart": (None, "other_crs", "do not overlap", (), None),
    "crs_missing_on_one": (None, "no_crs", "only one image has a CRS", (), None),
    "all_nodata": ("all_nodata", None, "no valid pixels", (), None),
    "constant": ("const", None, "constant", (), None),
    "all_nan": ("all_nan", None, "no valid pixels", (), None),
    "all_inf": (None, "all_inf", "no valid pixels", (), None),
    "band_out_of_range": (None, None, "band index 5 is out of range", ("--band-index", "5"), {"band_index": 5}),
    "moving_band_out_of_range": (None, None, "moving band index 2 is out of range", ("--moving-band-index", "2"),
                                 {"moving_band_index": 2}),
    "negative_band": (None, None, "0-based and must be >= 0", ("--fixed-band-index", "-1"), {"fixed_band_index": -1}),
}


@pytest.mark.parametrize("case", sorted(INPUT_CASES))
def test_bad_input_matrix(case, pair, bad, tmp_path, capsys):
    mkey, fkey, match, extra, api = INPUT_CASES[case]
    moving, fixed = pair

    def pick(key, good):
        if key is None:
            return good
        return tmp_path / "missing.tif" if key == "MISSING" else bad[key]

    refuse(capsys, pick(mkey, moving), pick(fkey, fixed), tmp_path / "out.tif", match, extra, api)


NO_SILENT_FAILURE = {
    "pure_noise": ("noise", (), None),
    "unrelated_texture": ("unrelated", (), None),
    "shuffled_tiles": ("shuffled", (), None),
    "too_few_inliers": (None, ("--min-inliers", "100000"), {"min_inliers": 100000}),
}


@pytest.mark.parametrize("case", sorted(NO_SILENT_FAILURE))
def test_no_silent_failure(case, pair, bad, tmp_path, capsys):
    """Tie points too few, unreliable or inconsistent: exit 3 with the quality figures, never 0."""
    key, extra, api = NO_SILENT_FAILURE[case]
    moving, fixed = pair
    refuse(capsys, bad[key] if key else moving, fixed, tmp_path / "out.tif", "alignment failed the quality check",
           extra, api, code=3, exc=AlignmentError)


def test_the_quality_gate_names_the_option_that_sets_it(pair, tmp_path, capsys):
    moving, fixed = pair
    refuse(capsys, moving, fixed, tmp_path / "out.tif", r"RMS residual [0-9.]+ px \(--max-rms 1e-05\)",
           ("--max-rms", "0.00001"), {"max_rms_px": 0.00001}, code=3, exc=AlignmentError)


def test_inf_counts_as_invalid_not_a_crash(tmp_path, capsys):
    p = make_pair((256, 256), rotation_deg=0.2, shift=(3.3, -2.1), seed=3, dtype="float32")
    mov = p.moving.copy()
    mov[:, 20:70, 30:90] = np.inf
    mov[:, 150:160, :] = -np.inf
    moving = write_tif(tmp_path / "inf.tif", mov)
    fixed = write_tif(tmp_path / "fixed.tif", p.fixed)
    out = tmp_path / "out.tif"
    rc = vhr_main(["--moving-image", str(moving), "--fixed-image", str(fixed), "--output-image", str(out),
                   "--output-nodata", "-9999"])
    o, e = capsys.readouterr()
    assert rc == 0, e
    import rasterio

    with rasterio.open(out) as ds:
        a = ds.read(1)
    assert np.isfinite(a).all()
    assert (a[25:65, 35:85] == -9999).all() and (a[152:158, 10:240] == -9999).all()
    assert (a[200:240, 100:200] != -9999).all()


# ------------------------------------------------------------------------------------ output paths
def test_output_folder_missing_or_a_file(pair, bad, tmp_path, capsys):
    moving, fixed = pair
    refuse(capsys, moving, fixed, tmp_path / "nodir" / "out.tif", "output folder does not exist")
    refuse(capsys, moving, fixed, bad["text"] / "out.tif", "output folder is not a folder")
    refuse(capsys, moving, fixed, tmp_path, "output path is a folder", ("--overwrite",), {"overwrite": True})


def test_output_equal_to_an_input(pair, tmp_path, capsys, monkeypatch):
    moving, fixed = pair
    work = tmp_path / "w"
    (work / "sub").mkdir(parents=True)
    m, f = work / "moving.tif", work / "fixed.tif"
    shutil.copy(moving, m)
    shutil.copy(fixed, f)
    os.symlink(f, work / "link.tif")
    os.link(m, work / "hard.tif")
    monkeypatch.chdir(work)
    for output in ("moving.tif", m, "sub/../fixed.tif", "./fixed.tif", "link.tif", "hard.tif"):
        for extra in ((), ("--overwrite",)):
            refuse(capsys, "moving.tif", "fixed.tif", output, "same file as an input", extra,
                   {"overwrite": bool(extra)})
    # the model written beside the output must not replace an input or the output itself
    refuse(capsys, m, f, work / "o.tif", "same file as an input", ("--model-out", "fixed.tif"),
           {"model_out": "fixed.tif"})
    refuse(capsys, m, f, work / "o.tif", "--model-out and --output-image name the same file",
           ("--model-out", "sub/../o.tif"), {"model_out": "sub/../o.tif"})


def test_report_out_equal_to_an_input_is_refused(pair, tmp_path, capsys):
    moving, fixed = pair
    m = tmp_path / "moving.tif"
    shutil.copy(moving, m)
    refuse(capsys, m, fixed, tmp_path / "o.tif", "same file as an input", ("--report-out", m), {"report_out": str(m)})


def test_apply_output_equal_to_like_is_refused(pair, tmp_path, capsys):
    moving, fixed = pair
    f = tmp_path / "fixed.tif"
    shutil.copy(fixed, f)
    model = tmp_path / "m.json"
    save_model(AlignmentModel.identity((256, 256)), model)
    before = sha(f)
    rc = rastalign_main(["apply", "--model", str(model), "--moving-image", str(moving), "--like", str(f),
                         "--output-image", str(f), "--overwrite"])
    err = capsys.readouterr().err
    assert sha(f) == before
    assert rc != 0 and "same file as an input" in err


def test_existing_output_without_overwrite_is_untouched(pair, tmp_path, capsys):
    moving, fixed = pair
    out = tmp_path / "out.tif"
    out.write_bytes(b"precious bytes")
    refuse(capsys, moving, fixed, out, r"output exists \(--overwrite, or overwrite=True from Python, replaces it\)")
    assert out.read_bytes() == b"precious bytes"
    out2 = tmp_path / "out2.tif"
    Path(f"{out2}.model.json").write_text("{}")
    refuse(capsys, moving, fixed, out2, r"output exists .*out2\.tif\.model\.json")
    assert Path(f"{out2}.model.json").read_text() == "{}"


def test_outputs_get_ordinary_permissions(pair, tmp_path):
    """Temporary files are private while written (mkstemp) but the renamed output follows the umask."""
    moving, fixed = pair
    old = os.umask(0o022)
    try:
        res = align_image_pair(str(moving), str(fixed), str(tmp_path / "o.tif"))
    finally:
        os.umask(old)
    assert (tmp_path / "o.tif").stat().st_mode & 0o777 == 0o644
    assert Path(res.model_path).stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------------------------------ permissions (subprocess)
def _unprivileged_prefix():
    """Run a command so that file permissions apply: as is for a normal user; as root without
    CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH (setpriv), else skip."""
    if not IS_ROOT:
        return ()
    if SETPRIV is None:
        pytest.skip("running as root without setpriv: permissions cannot be enforced")
    return (SETPRIV, "--bounding-set", "-dac_override,-dac_read_search")


API_SNIPPET = ("import sys, rastalign\n"
               "from rastalign.errors import RastalignError\n"
               "try:\n"
               "    rastalign.align_image_pair(sys.argv[1], sys.argv[2], sys.argv[3])\n"
               "except RastalignError as e:\n"
               "    print(type(e).__name__, e)\n"
               "    sys.exit(2)\n")


def _api_in_subprocess(moving, fixed, out, prefix):
    cmd = [*prefix, sys.executable, "-c", API_SNIPPET, str(moving), str(fixed), str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_unreadable_input(pair, tmp_path):
    prefix = _unprivileged_prefix()
    moving, fixed = pair
    m = tmp_path / "moving.tif"
    shutil.copy(moving, m)
    m.chmod(0)
    out = tmp_path / "out.tif"
    try:
        r = run_module("rastalign.cli.vhr", ["--moving-image", m, "--fixed-image", fixed, "--output-image", out],
                       prefix=prefix)
        assert r.returncode == 2 and r.stdout == ""
        assert_one_line(r.stderr, "vhr-align-image-pair", r"not readable \(permission denied\)")
        a = _api_in_subprocess(m, fixed, out, prefix)
        assert a.returncode == 2 and "InputError" in a.stdout and "permission denied" in a.stdout, a
    finally:
        m.chmod(0o644)
    assert sha(m) == sha(moving)
    assert_clean(out, {})


@pytest.mark.slow
def test_read_only_output_folder(pair, tmp_path):
    prefix = _unprivileged_prefix()
    moving, fixed = pair
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        r = run_module("rastalign.cli.vhr", ["--moving-image", moving, "--fixed-image", fixed, "--output-image",
                                             ro / "out.tif"], prefix=prefix)
        assert r.returncode == 2 and r.stdout == ""
        assert_one_line(r.stderr, "vhr-align-image-pair", "output folder is not writable")
        a = _api_in_subprocess(moving, fixed, ro / "out.tif", prefix)
        assert a.returncode == 2 and "OutputError" in a.stdout, a
    finally:
        ro.chmod(0o755)
    assert os.listdir(ro) == []


@contextlib.contextmanager
def _tmpfs(mnt, options):
    """A tmpfs mounted with ``options`` at ``mnt`` for the block (skips without root, or where mounting fails)."""
    if not IS_ROOT:
        pytest.skip("mounting a tmpfs needs root")
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.mark.slow
def test_read_only_file_system(pair, tmp_path, capsys):
    """A read-only mount refuses even root: the output folder check must not trust os.access alone."""
    moving, fixed = pair
    with _tmpfs(tmp_path / "rofs", "ro,size=1m") as mnt:
        refuse(capsys, moving, fixed, mnt / "out.tif", "(not writable|Read-only file system)")


# ------------------------------------------------------------------------------------ disk full
@pytest.fixture(scope="module")
def big_pair(tmp_path_factory):
    """A pair whose aligned output (~2.4 MB compressed) cannot fit in 1 MB."""
    d = tmp_path_factory.mktemp("big")
    moving, fixed, _ = write_pair(d, (1024, 1024), rotation_deg=0.2, shift=(3.3, -2.1), bands=2, seed=3)
    return Path(moving), Path(fixed)


def _check_write_failure(r, out, before, match):
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert "Traceback" not in r.stderr
    # libtiff itself may print raw lines such as "_tiffWriteProc: No space left on device." before
    # ours; rastalign's own report is exactly one line, the last one, naming the cause.
    ours = [ln for ln in r.stderr.splitlines() if ln.startswith("vhr-align-image-pair")]
    assert len(ours) == 1 and ours[0] == r.stderr.strip().splitlines()[-1]
    assert re.search(match, ours[0]), ours[0]
    assert_clean(out, before)
    assert os.listdir(out.parent) == []


@pytest.mark.slow
def test_disk_full_mid_write_tmpfs(big_pair, tmp_path):
    moving, fixed = big_pair
    with _tmpfs(tmp_path / "small", "size=1m") as mnt:  # without root: the RLIMIT_FSIZE test
        before = hashes([moving, fixed])
        out = mnt / "out.tif"
        r = run_module("rastalign.cli.vhr", ["--moving-image", moving, "--fixed-image", fixed, "--output-image", out,
                                             "--split-factor", "2"])
        _check_write_failure(r, out, before, r"cannot write output .*out\.tif: no space left on device")
        with pytest.raises(OutputError, match="no space left on device"):
            align_image_pair(str(moving), str(fixed), str(out), chunks=(256, 256))
        assert_clean(out, before)


@pytest.mark.slow
def test_file_size_limit_mid_write(big_pair, tmp_path):
    """RLIMIT_FSIZE makes writes fail with EFBIG part way through (SIGXFSZ ignored)."""
    moving, fixed = big_pair
    out = tmp_path / "o" / "out.tif"
    out.parent.mkdir()
    before = hashes([moving, fixed])

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, 600_000))

    r = run_module("rastalign.cli.vhr", ["--moving-image", moving, "--fixed-image", fixed, "--output-image", out,
                                         "--split-factor", "2"], preexec_fn=limit)
    _check_write_failure(r, out, before, r"cannot write output .*out\.tif: file too large")


# ------------------------------------------------------------------------------------ absurd sizes
@pytest.mark.slow
def test_absurd_declared_size_refused_before_allocating(pair, tmp_path, capsys):
    """A sparse GeoTIFF declaring 10^6 x 10^6 px (a few MB on disk) is refused from its header."""
    import rasterio
    from affine import Affine

    moving, fixed = pair
    huge = tmp_path / "huge.tif"
    with rasterio.open(huge, "w", driver="GTiff", width=10 ** 6, height=10 ** 6, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(0.5, 0, 500000.0, 0, -0.5, 5800000.0), tiled=True,
                       blockxsize=1024, blockysize=1024, SPARSE_OK=True, BIGTIFF="YES"):
        pass
    assert huge.stat().st_size < 50e6
    t0 = time.perf_counter()
    refuse(capsys, huge, fixed, tmp_path / "out.tif", "absurd size")
    refuse(capsys, moving, huge, tmp_path / "out.tif", "absurd size")
    assert time.perf_counter() - t0 < 10
    r = run_module("rastalign.cli.vhr", ["--moving-image", huge, "--fixed-image", fixed, "--output-image",
                                         tmp_path / "out.tif"])
    assert r.returncode == 2 and "absurd size" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------ model JSON
GOOD_MODEL = {"format": "rastalign-model", "version": 1, "affine": [[1, 0, 0.5], [0, 1, -0.25]],
              "pre": [[1, 0, 0], [0, 1, 0]], "field": None, "output_shape": [256, 256],
              "moving_shape": [256, 256], "meta": {}}


def _model(**change):
    d = dict(GOOD_MODEL)
    for k, v in change.items():
        if v is ...:
            d.pop(k)
        else:
            d[k] = v
    return json.dumps(d)


FIELD = {"origin": [0, 0], "spacing": [100, 100], "nodes": [3, 3], "coef_x": [[0] * 5] * 5, "coef_y": [[0] * 5] * 5}
BAD_MODELS = {
    "not_json": ("hello world", "malformed model JSON"),
    "truncated": (_model()[:40], "malformed model JSON"),
    "empty_file": ("", "malformed model JSON"),
    "top_level_list": ("[1, 2, 3]", "top level is not an object"),
    "deeply_nested": ("[" * 100000 + "]" * 100000, "nested too deeply"),
    "wrong_format": (_model(format="something-else"), "not a rastalign model"),
    "future_version": (_model(version=99), "newer than this rastalign"),
    "missing_affine": (_model(affine=...), "missing 'affine'"),
    "affine_wrong_shape": (_model(affine=[[1, 0], [0, 1]]), "2x3 matrix"),
    "affine_strings": (_model(affine=[["a", 0, 0], [0, 1, 0]]), "malformed model JSON"),
    "affine_nan": (_model().replace("0.5", "NaN"), "NaN is not a number"),
    "affine_huge": (_model(affine=[[1e400, 0, 0], [0, 1, 0]]).replace("inf", "1e400"), "malformed model JSON"),
    "affine_singular": (_model(affine=[[1, 2, 0], [2, 4, 0]]), "singular"),
    "negative_shape": (_model(output_shape=[-256, 256]), "two positive integers"),
    "shape_not_list": (_model(output_shape="256x256"), r"must be \[rows, cols\]"),
    "field_bad_nodes": (_model(field=dict(FIELD, nodes=[-2, -2])), "field 'nodes'"),
    "field_zero_spacing": (_model(field=dict(FIELD, spacing=[0, 100])), "spacing"),
    "field_wrong_coef_shape": (_model(field=dict(FIELD, coef_x=[[0] * 4] * 4)), "spline coefficients"),
    "field_not_object": (_model(field=[1, 2]), "'field' must be an object"),
    "meta_not_object": (_model(meta=[1]), "'meta' must be an object"),
    "not_utf8": (b"\xff\xfe{\x00}\x00", "not UTF-8"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_malformed_model_json(case, pair, tmp_path, capsys):
    text, match = BAD_MODELS[case]
    moving, _ = pair
    path = tmp_path / "model.json"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    out = tmp_path / "out.tif"
    before = hashes([moving, path])
    rc = rastalign_main(["apply", "--model", str(path), "--moving-image", str(moving), "--output-image", str(out)])
    o, e = capsys.readouterr()
    assert rc == 2 and o == ""
    assert_one_line(e, "rastalign apply", match)
    with pytest.raises(InputError, match=match):
        load_model(path)
    if not isinstance(text, bytes) and text.lstrip().startswith(("{", "[")):
        with pytest.raises(InputError, match=match):
            AlignmentModel.from_json(text)
    assert_clean(out, before)


def test_model_file_missing_or_folder(pair, tmp_path, capsys):
    moving, _ = pair
    for path, match in ((tmp_path / "nope.json", "No such file"), (tmp_path, "Is a directory")):
        rc = rastalign_main(["apply", "--model", str(path), "--moving-image", str(moving), "--output-image",
                             str(tmp_path / "o.tif")])
        assert rc == 2
        assert_one_line(capsys.readouterr().err, "rastalign apply", f"cannot read model file .*{match}")
        with pytest.raises(InputError, match=match):
            load_model(path)


def test_good_model_applies(pair, tmp_path, capsys):
    """The reference for the malformed cases: the same file, well formed, is applied."""
    moving, _ = pair
    (tmp_path / "m.json").write_text(_model())
    rc = rastalign_main(["apply", "--model", str(tmp_path / "m.json"), "--moving-image", str(moving),
                         "--output-image", str(tmp_path / "o.tif")])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "o.tif").exists()


# ------------------------------------------------------------------------------------ catalogues
@pytest.fixture(scope="module")
def stars(tmp_path_factory):
    from rastalign.testing.stars import write_star_pair

    d = tmp_path_factory.mktemp("stars")
    src, tmpl, _ = write_star_pair(d, (256, 256), 150, rotation_deg=2.0, shift=(3.5, -1.25), seed=2)
    return Path(src), Path(tmpl)


HEAD = "#   1 NUMBER\n#   2 X_IMAGE [pixel]\n#   3 Y_IMAGE [pixel]\n#   4 FLUX_AUTO [count]\n"
BAD_CATALOGUES = {
    "binary": (b"\x00\x01\x02\xff" * 100, 2, "not a readable SExtractor catalogue"),
    "plain_text": (b"hello world\nfoo bar\n", 2, "not a readable SExtractor catalogue"),
    "ragged_rows": ((HEAD + "1 10 20 30\n2 11\n").encode(), 2, "not a readable SExtractor catalogue"),
    "missing_columns": (b"#   1 NUMBER\n#   2 X_IMAGE [pixel]\n1 10.0\n", 2, "lacks column"),
    "header_only": (HEAD.encode(), 3, "too few detections in source"),
    "all_nan": ((HEAD + "".join(f"{i} nan nan nan\n" for i in range(200))).encode(), 3, "too few detections"),
    "fits_without_table": ("FITS_IMAGE", 2, "has no table HDU"),
    "fake_fits": (b"SIMPLE  = garbage" + b" " * 100, 2, "not a readable SExtractor catalogue"),
    "empty": (b"", 2, "catalogue is empty"),
    "non_numeric": ((HEAD + "1 abc def ghi\n").encode(), 2, "not numeric"),
}


@pytest.mark.parametrize("content,code,match", BAD_CATALOGUES.values(), ids=list(BAD_CATALOGUES))
def test_malformed_catalogue(content, code, match, stars, tmp_path, capsys):
    src, tmpl = stars
    cat = tmp_path / "bad.cat"
    if content == "FITS_IMAGE":
        from astropy.io import fits

        fits.PrimaryHDU(np.zeros((4, 4), np.float32)).writeto(cat)
    else:
        cat.write_bytes(content)
    out = tmp_path / "out.fits"
    before = hashes([src, tmpl, cat])
    rc = fits_main([str(src), str(out), "-tf", str(tmpl), "-sc", str(cat), "--min-n-match", "20"])
    o, e = capsys.readouterr()
    assert rc == code and o == ""
    assert_one_line(e, "align-fits", match)
    from rastalign import align_fits

    with pytest.raises(RastalignError, match=match):
        align_fits(str(src), str(out), template_path=str(tmpl), source_cat=str(cat), min_n_match=20)
    assert_clean(out, before)


# ------------------------------------------------------------------------------------ scheduler
@pytest.mark.parametrize("address,match", [("tcp://127.0.0.1:9", "Connection refused"),
                                           ("tcp://no-such-host.invalid:8786", r"\S"),
                                           ("tcp://127.0.0.1:99999", "expected tcp://HOST:PORT"),
                                           ("bogus://127.0.0.1:8786", "unknown address scheme")])
def test_unreachable_scheduler_fails_fast(address, match, pair, tmp_path, capsys):
    moving, fixed = pair
    t0 = time.perf_counter()
    refuse(capsys, moving, fixed, tmp_path / "out.tif", f"cannot reach the dask scheduler at .*{match}",
           ("--scheduler", address), {"scheduler": address})
    assert time.perf_counter() - t0 < 15


@pytest.mark.slow
def test_unreachable_scheduler_subprocess(pair, tmp_path):
    moving, fixed = pair
    t0 = time.perf_counter()
    r = run_module("rastalign.cli.vhr", ["--moving-image", moving, "--fixed-image", fixed, "--output-image",
                                         tmp_path / "out.tif", "--scheduler", "tcp://127.0.0.1:9"], timeout=60)
    assert time.perf_counter() - t0 < 15
    assert r.returncode == 2 and r.stdout == ""
    assert_one_line(r.stderr, "vhr-align-image-pair", "cannot reach the dask scheduler at tcp://127.0.0.1:9")
    assert_clean(tmp_path / "out.tif", {})


# ------------------------------------------------------------------------------------ exit status and -v
@pytest.mark.slow
def test_subprocess_exit_status_and_traceback_only_with_v(pair, bad, tmp_path):
    moving, fixed = pair
    args = ["--moving-image", bad["truncated"], "--fixed-image", fixed, "--output-image", tmp_path / "o.tif"]
    r = run_module("rastalign.cli.vhr", args)
    assert r.returncode == 2 and r.stdout == ""
    assert_one_line(r.stderr, "vhr-align-image-pair", "truncated or corrupt")
    r = run_module("rastalign.cli.vhr", args + ["-v"])
    assert r.returncode == 2 and "Traceback" in r.stderr
    r = run_module("rastalign.cli.vhr", ["--moving-image", bad["noise"], "--fixed-image", fixed, "--output-image",
                                         tmp_path / "o.tif"])
    assert r.returncode == 3 and r.stdout == ""
    assert_one_line(r.stderr, "vhr-align-image-pair", "quality check")
    assert_clean(tmp_path / "o.tif", {})


# ------------------------------------------------------------------------------------ determinism
def _pixels(path):
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.tags()


def test_deterministic_across_runs_schedulers_and_chunkings(tmp_path):
    moving, fixed, _ = write_pair(tmp_path / "in", (512, 512), rotation_deg=0.3, shift=(5.3, -2.7),
                                  distortion_px=1.5, bands=2, seed=5)
    runs = {"threads": {}, "threads_again": {}, "synchronous": {"scheduler": "synchronous"},
            "processes": {"scheduler": "processes"}, "ragged_chunks": {"chunks": (100, 77)}}
    runs.update({f"split{k}": {"split_factor": k} for k in range(4)})
    ref = None
    for name, kw in runs.items():
        out = tmp_path / f"{name}.tif"
        res = align_image_pair(str(moving), str(fixed), str(out), **kw)
        data, prof, tags = _pixels(out)
        model = Path(res.model_path).read_bytes()
        if ref is None:
            ref = (data, model, tags, sha(out), res.quality)
            assert res.model.field is not None  # the non-rigid path is exercised too
            continue
        np.testing.assert_array_equal(data, ref[0], err_msg=name)
        assert model == ref[1], name
        assert tags == ref[2], name
        assert res.quality == ref[4], name
        if name == "threads_again":
            assert sha(out) == ref[3]  # whole file byte-identical across runs


# ------------------------------------------------------------------------------------ security
def _source_files():
    return sorted(p for p in SRC.rglob("*.py"))


def test_no_shell_commands_built_from_input():
    bad = re.compile(r"shell\s*=\s*True|os\.system\(|os\.popen\(|commands\.getoutput|subprocess\.")
    hits = [f"{p.name}:{i}" for p in _source_files() for i, ln in enumerate(p.read_text().splitlines(), 1)
            if bad.search(ln)]
    assert hits == []


def test_no_code_execution_when_reading_data():
    bad = re.compile(r"\bpickle\b|\bmarshal\b|\byaml\.load\(|\beval\(|\bexec\(|np\.load\(.*allow_pickle\s*=\s*True"
                     r"|tempfile\.mktemp\(")
    hits = [f"{p.name}:{i}: {ln.strip()}" for p in _source_files()
            for i, ln in enumerate(p.read_text().splitlines(), 1) if bad.search(ln) and not ln.strip().startswith("#")]
    assert hits == []


def test_temp_files_are_created_safely():
    text = (SRC / "sinks" / "atomic.py").read_text()
    assert "tempfile.mkstemp(" in text and "mktemp(" not in text.replace("mkstemp(", "")
    model_text = (SRC / "model" / "model.py").read_text()
    assert "json.loads(" in model_text


def test_model_json_is_data_only(tmp_path):
    """A model file cannot smuggle code: unknown keys are ignored, objects are not instantiated."""
    d = json.loads(_model())
    d["meta"] = {"__reduce__": "os.system('touch pwned')", "py/object": "os.system"}
    d["__class__"] = "subprocess.Popen"
    m = AlignmentModel.from_json(json.dumps(d))
    assert m.meta["py/object"] == "os.system"  # kept as an inert string
    assert not Path("pwned").exists()
    assert AlignmentModel.from_json(m.to_json()).meta == m.meta
