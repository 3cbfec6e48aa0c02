"""Inputs in object storage: a real S3-compatible server (moto's server mode) on 127.0.0.1, started and
stopped here; pairs read through ``s3://`` and presigned ``https://`` URLs align bit for bit like the
same local files, under local threads and a scheduler with workers in folders of their own; bad
network input gets one line; the secret key never appears in any output."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import rioxarray  # noqa: F401
import xarray as xr

from conftest import process_cluster, read_tif

pytestmark = pytest.mark.slow  # a real S3 server in its own process: outside the inner loop

SECRET = "rastalign-test-secret-Zq7xK2"
BUCKET = "rastalign-cloud-test"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    boto3 = pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    from rastalign.testing.pairs import write_pair

    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "rastalign-test-key",
           "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in list(env) + ["AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING"]}
    os.environ.update(env)
    try:
        d = tmp_path_factory.mktemp("cloud")
        moving, fixed, _ = write_pair(d, (600, 520), rotation_deg=0.3, shift=(4.2, -2.6), bands=2, seed=8)
        client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        for p in (moving, fixed):
            client.upload_file(str(p), BUCKET, f"pair/{p.name}")
        client.put_object(Bucket=BUCKET, Key="pair/notes.tif", Body=b"this is not a raster\n" * 50)
        client.put_object(Bucket=BUCKET, Key="pair/truncated.tif", Body=moving.read_bytes()[:40000])
        yield {"dir": d, "moving": moving, "fixed": fixed, "client": client, "env": env, "port": port}
    finally:
        server.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cli(args, env=None):
    return subprocess.run([sys.executable, "-m", "rastalign.cli.vhr", *map(str, args)], capture_output=True,
                          text=True, env=env)


def test_s3_and_https_pairs_align_like_local_files(s3, tmp_path):
    local = tmp_path / "local.tif"
    r = _cli(["--moving-image", s3["moving"], "--fixed-image", s3["fixed"], "--output-image", local])
    assert r.returncode == 0, r.stderr
    remote = tmp_path / "s3.tif"
    report = tmp_path / "report.json"
    r = _cli(["--moving-image", f"s3://{BUCKET}/pair/moving.tif", "--fixed-image", f"s3://{BUCKET}/pair/fixed.tif",
              "--output-image", remote, "--report-out", report, "-v"])
    assert r.returncode == 0, r.stderr
    assert np.array_equal(read_tif(remote)[0], read_tif(local)[0])
    url = s3["client"].generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "pair/moving.tif"},
                                              ExpiresIn=600)
    via_https = tmp_path / "https.tif"
    r = _cli(["--moving-image", url, "--fixed-image", f"s3://{BUCKET}/pair/fixed.tif", "--output-image", via_https])
    assert r.returncode == 0, r.stderr
    assert np.array_equal(read_tif(via_https)[0], read_tif(local)[0])
    texts = [r.stdout, r.stderr, report.read_text(), (tmp_path / "s3.tif.model.json").read_text()]
    assert not any(SECRET in t for t in texts)


def test_s3_pair_on_a_remote_scheduler_equals_local_threads(s3, tmp_path_factory):
    """Workers started after the AWS variables are set, each in an empty folder: they read the inputs from
    the server themselves."""
    with process_cluster(tmp_path_factory) as addr:
        out = tmp_path_factory.mktemp("out")
        args = ["--moving-image", f"s3://{BUCKET}/pair/moving.tif", "--fixed-image", f"s3://{BUCKET}/pair/fixed.tif"]
        r1 = _cli(args + ["--output-image", out / "threads.tif"])
        r2 = _cli(args + ["--output-image", out / "remote.tif", "--scheduler", addr])
        assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
        assert np.array_equal(read_tif(out / "remote.tif")[0], read_tif(out / "threads.tif")[0])
        assert SECRET not in r2.stderr + r2.stdout
        # Zarr into the bucket, written by the workers; the model JSON beside it
        for name, sched in (("threads.zarr", "threads"), ("remote.zarr", addr)):
            r = _cli(args + ["--output-image", f"s3://{BUCKET}/out/{name}", "--scheduler", sched])
            assert r.returncode == 0, r.stderr
            ds = xr.open_zarr(f"s3://{BUCKET}/out/{name}")
            assert np.array_equal(ds["aligned"].values, read_tif(out / "threads.tif")[0])
            assert ds["aligned"].rio.crs is not None
        # a COG into the bucket, uploaded by the workers: the same pixels
        r = _cli(args + ["--output-image", f"s3://{BUCKET}/out/remote.cog.tif", "--scheduler", addr])
        assert r.returncode == 0, r.stderr
        (out / "back.cog.tif").write_bytes(
            s3["client"].get_object(Bucket=BUCKET, Key="out/remote.cog.tif")["Body"].read())
        assert np.array_equal(read_tif(out / "back.cog.tif")[0], read_tif(out / "threads.tif")[0])
        keys = [o["Key"] for o in s3["client"].list_objects_v2(Bucket=BUCKET, Prefix="out/")["Contents"]]
        assert "out/remote.zarr.model.json" in keys and "out/remote.cog.tif.model.json" in keys
        assert not [k for k in keys if "rastalign-tmp" in k]
        r = _cli(args + ["--output-image", f"s3://{BUCKET}/out/remote.zarr"])
        assert r.returncode == 2 and "output exists" in r.stderr
        r = _cli(args + ["--output-image", f"s3://{BUCKET}/out/x.fits"])
        assert r.returncode == 2 and "not supported yet" in r.stderr


@pytest.mark.parametrize("moving,match", [
    (f"s3://{BUCKET}/pair/missing.tif", "not found: s3://"),
    ("s3://no-such-bucket-rastalign/x.tif", "not found: s3://"),
    (f"s3://{BUCKET}/pair/notes.tif", "not a readable raster: s3://"),
    (f"s3://{BUCKET}/pair/truncated.tif", r"s3://\S+truncated.tif"),
    ("ftp://host/x.tif", "unsupported URL scheme 'ftp'"),
])
def test_bad_network_input_is_one_line(s3, tmp_path, moving, match):
    import re

    out = tmp_path / "o.tif"
    r = _cli(["--moving-image", moving, "--fixed-image", f"s3://{BUCKET}/pair/fixed.tif", "--output-image", out])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert re.search(match, r.stderr), r.stderr
    assert SECRET not in r.stderr and not list(tmp_path.iterdir())


def test_unreachable_endpoint_is_one_line(s3, tmp_path):
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{_free_port()}", GDAL_HTTP_MAX_RETRY="1",
               GDAL_HTTP_TIMEOUT="5")
    env.pop("AWS_S3_ENDPOINT", None)
    r = _cli(["--moving-image", f"s3://{BUCKET}/pair/moving.tif", "--fixed-image", s3["fixed"],
              "--output-image", tmp_path / "o.tif"], env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "s3://" in r.stderr and SECRET not in r.stderr
    assert not list(tmp_path.iterdir())
    assert json.dumps(r.stderr)  # one printable line


def test_fits_frames_from_s3_through_align_fits(s3, tmp_path):
    from astropy.io import fits

    from rastalign.testing.stars import write_star_pair

    src, tmpl, _ = write_star_pair(tmp_path / "stars", (512, 480), 300, rotation_deg=3.0, shift=(4.5, -2.5), seed=6)
    for p in (src, tmpl):
        s3["client"].upload_file(str(p), BUCKET, f"stars/{p.name}")
    cmd = [sys.executable, "-c", "import sys; from rastalign.cli.fits import main; sys.exit(main(sys.argv[1:]))"]
    local = subprocess.run(cmd + [str(src), str(tmp_path / "local.fits"), "-tf", str(tmpl)], capture_output=True,
                           text=True)
    remote = subprocess.run(cmd + [f"s3://{BUCKET}/stars/{src.name}", str(tmp_path / "s3.fits"), "-tf",
                                   f"s3://{BUCKET}/stars/{tmpl.name}"], capture_output=True, text=True)
    assert local.returncode == 0 and remote.returncode == 0, local.stderr + remote.stderr
    assert np.array_equal(fits.getdata(tmp_path / "s3.fits"), fits.getdata(tmp_path / "local.fits"), equal_nan=True)
    missing = subprocess.run(cmd + [f"s3://{BUCKET}/stars/nope.fits", str(tmp_path / "m.fits"), "-tf",
                                    f"s3://{BUCKET}/stars/{tmpl.name}"], capture_output=True, text=True)
    assert missing.returncode == 2 and "not found: s3://" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and SECRET not in missing.stderr + remote.stderr


def test_cog_and_gtiff_into_the_bucket_equal_local_files(s3, tmp_path_factory, monkeypatch):
    """A COG to s3:// is uploaded by the workers as numbered parts (5 MiB here, so several), the header
    in part 1 sent last; under threads the file is made locally and uploaded whole. Either way the object
    holds the same bytes as the local file, and nothing else is left in the bucket."""
    import rasterio
    from affine import Affine

    from rastalign.cli.demo import main as rastalign_main
    from rastalign.sinks import multipart
    from rastalign import save_model
    from rastalign.model.model import AlignmentModel

    monkeypatch.setattr(multipart, "PART_BYTES", multipart.MIN_PART)
    d = tmp_path_factory.mktemp("cog_s3")
    rng = np.random.default_rng(4)
    noise = rng.normal(100.0, 30.0, (1536, 2304)).astype("float32")  # barely compressible: about 14 MB as a COG
    with rasterio.open(d / "noise.tif", "w", driver="GTiff", width=2304, height=1536, count=1, dtype="float32",
                       crs="EPSG:32633", transform=Affine(0.5, 0, 500000.0, 0, -0.5, 5800000.0), tiled=True) as ds:
        ds.write(noise, 1)
    save_model(AlignmentModel(np.array([[1.0, 0.001, 0.3], [-0.001, 1.0, -0.2]]), output_shape=(1536, 2304),
                   moving_shape=(1536, 2304)), d / "model.json")
    base = ["apply", "--model", str(d / "model.json"), "--moving-image", str(d / "noise.tif"), "--resampling",
            "bilinear"]
    for name in ("local.cog.tif", "local.tif"):
        assert rastalign_main(base + ["--output-image", str(d / name)]) == 0
    with process_cluster(tmp_path_factory) as addr:
        for sched in ("threads", addr):
            tag = "threads" if sched == "threads" else "cluster"
            for name, local in ((f"{tag}.cog.tif", "local.cog.tif"), (f"{tag}.tif", "local.tif")):
                assert rastalign_main(base + ["--output-image", f"s3://{BUCKET}/cog/{name}", "--scheduler",
                                              sched]) == 0
                body = s3["client"].get_object(Bucket=BUCKET, Key=f"cog/{name}")["Body"].read()
                if name.endswith(".cog.tif"):
                    assert body == (d / local).read_bytes(), name
                else:
                    (d / f"back_{name}").write_bytes(body)
                    assert np.array_equal(read_tif(d / f"back_{name}")[0], read_tif(d / local)[0], equal_nan=True)
    assert len((d / "local.cog.tif").read_bytes()) > 2 * multipart.MIN_PART  # so the upload had several parts
    keys = [o["Key"] for o in s3["client"].list_objects_v2(Bucket=BUCKET, Prefix="cog/")["Contents"]]
    assert sorted(keys) == sorted(f"cog/{t}{s}" for t in ("threads", "cluster") for s in (".cog.tif", ".tif"))
    assert not s3["client"].list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    from rio_cogeo.cogeo import cog_validate

    (d / "back.cog.tif").write_bytes(s3["client"].get_object(Bucket=BUCKET, Key="cog/cluster.cog.tif")["Body"].read())
    assert cog_validate(str(d / "back.cog.tif"))[0]


def test_a_stack_from_and_into_the_bucket(s3):
    """Scenes and reference read from s3://, outputs, models and the stack report written there; a missing
    key is one failed row."""
    import rastalign

    res = rastalign.align_stack([f"s3://{BUCKET}/pair/moving.tif", f"s3://{BUCKET}/pair/gone.tif"],
                                f"s3://{BUCKET}/pair/fixed.tif", f"s3://{BUCKET}/stack", output_format="COG")
    assert [r["status"] for r in res.rows] == ["ok", "failed"] and "not found" in res.rows[1]["error"]
    keys = {o["Key"] for o in s3["client"].list_objects_v2(Bucket=BUCKET, Prefix="stack/")["Contents"]}
    assert keys == {"stack/moving.aligned.cog.tif", "stack/moving.aligned.cog.tif.model.json",
                    "stack/stack_report.json", "stack/stack_report.csv", "stack/stack_report.png"}
    doc = json.loads(s3["client"].get_object(Bucket=BUCKET, Key="stack/stack_report.json")["Body"].read())
    assert doc["n_ok"] == 1 and SECRET not in json.dumps(doc)
    again = rastalign.align_stack([f"s3://{BUCKET}/pair/moving.tif"], f"s3://{BUCKET}/pair/fixed.tif",
                                  f"s3://{BUCKET}/stack", output_format="COG", skip_existing=True, plot=False)
    assert again.rows[0]["reused"]


def test_with_a_remote_scheduler_the_client_never_opens_an_input(s3, tmp_path_factory, monkeypatch):
    """Every read of an input (headers, metadata, proxies, refinement windows) happens on the workers:
    in this (client) process, opening any input raises."""
    import rastalign
    from rastalign.io import proxy
    from rastalign.pipelines import refine
    from rastalign.io import fits as fits_io
    from rastalign.io import raster

    def refuse(*args, **kwargs):
        raise AssertionError(f"the client opened an input: {args[:1]}")

    with process_cluster(tmp_path_factory) as addr:
        out = tmp_path_factory.mktemp("client_io")
        for mod in (raster, proxy, refine):
            monkeypatch.setattr(mod, "open_dataset", refuse)
        monkeypatch.setattr(fits_io, "open_hdul", refuse)
        res = rastalign.align_image_pair(f"s3://{BUCKET}/pair/moving.tif", f"s3://{BUCKET}/pair/fixed.tif",
                                         str(out / "remote.tif"), scheduler=addr, report_out=str(out / "r.json"))
        assert res.quality["passed"]
        stack = rastalign.align_stack([f"s3://{BUCKET}/pair/moving.tif"], f"s3://{BUCKET}/pair/fixed.tif",
                                      out / "stack", scheduler=addr)
        assert stack.exit_code == 0
    from rastalign import load_model

    a = load_model(out / "remote.tif.model.json")
    b = load_model(out / "stack" / "moving.aligned.tif.model.json")
    gx, gy = np.meshgrid(np.arange(20, 500, 20.0), np.arange(20, 580, 20.0))
    assert np.abs(np.subtract(a(gx, gy), b(gx, gy))).max() < 0.02  # the stack shares the reference's proxy


def test_access_denied_is_one_line_naming_the_variables(s3, tmp_path):
    """moto checks credentials once its auth is switched on (its reset-auth API): the fixture's key is then
    unknown, every request is refused with 403, and the command says so in one line, without the secret."""
    import requests

    switch = f"http://127.0.0.1:{s3['port']}/moto-api/reset-auth"
    requests.post(switch, data=b"0", timeout=10).raise_for_status()
    try:
        r = _cli(["--moving-image", f"s3://{BUCKET}/pair/moving.tif", "--fixed-image", f"s3://{BUCKET}/pair/fixed.tif",
                  "--output-image", tmp_path / "o.tif"])
        f = subprocess.run([sys.executable, "-m", "rastalign.cli.fits", f"s3://{BUCKET}/pair/moving.tif",
                            str(tmp_path / "o.fits"), "-tf", f"s3://{BUCKET}/pair/fixed.tif"],
                           capture_output=True, text=True)
    finally:
        requests.post(switch, data=b"inf", timeout=10).raise_for_status()
    for res in (r, f):
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1, res.stderr
        assert "access denied" in lines[0] and "AWS_ACCESS_KEY_ID" in lines[0] and SECRET not in res.stderr
    assert not list(tmp_path.iterdir())
