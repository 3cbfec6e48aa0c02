"""A store that stops answering (issue 28, network faults): a real S3-compatible server (moto's) in a process
of its own on 127.0.0.1, paused with SIGSTOP, so that its connections stay open and nothing answers. Reads and
writes give up after ``RASTALIGN_STORE_TIMEOUT`` with one line saying that the store timed out and after how
long; a write leaves nothing at the output key and, once the server answers again, no multipart upload."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from rastalign.io import paths

BUCKET = "rastalign-stall-test"
TIMEOUT = 3  # RASTALIGN_STORE_TIMEOUT in these runs, seconds

# moto's server in its own process; with a trigger it pauses itself on the first request that matches it, so
# that the store stops answering at a known point of a run (the test process resumes it with SIGCONT)
SERVER = r"""
import os, signal, sys
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

port, trigger = int(sys.argv[1]), sys.argv[2]
app = DomainDispatcherApplication(create_backend_app)
stalled = []

def matches(environ):
    method, query = environ["REQUEST_METHOD"], environ.get("QUERY_STRING", "")
    if trigger == "upload_part":
        return method == "PUT" and "partNumber=" in query
    if trigger == "temporary_store":
        return method == "PUT" and "rastalign-tmp" in environ.get("PATH_INFO", "")
    if trigger == "pixels":  # a range past the first 16 KiB (GDAL's first read of a header): tiles
        first = environ.get("HTTP_RANGE", "bytes=0-").split("=")[-1].split("-")[0]
        return method == "GET" and first.isdigit() and int(first) >= 16384
    return False

def stalling(environ, start_response):
    if not stalled and matches(environ):
        stalled.append(1)
        os.kill(os.getpid(), signal.SIGSTOP)  # the whole server stops here, its connections open
    return app(environ, start_response)

make_server("127.0.0.1", port, stalling, threaded=True).serve_forever()
"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state(pid):
    """The process state letter (``T``: stopped), from /proc."""
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


@contextmanager
def moto_process(trigger="none"):
    """A moto server on 127.0.0.1 in its own process, its bucket made; yields ``(process, env, client)``.
    Always resumed and stopped at the end."""
    boto3 = pytest.importorskip("boto3")
    pytest.importorskip("moto.moto_server.werkzeug_app")
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("needs /proc to see that the server is paused")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), trigger], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        env = dict(os.environ, AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="stall-test-key",
                   AWS_SECRET_ACCESS_KEY="stall-test-secret", AWS_REGION="us-east-1",
                   RASTALIGN_STORE_TIMEOUT=str(TIMEOUT))
        for key in ("AWS_S3_ENDPOINT", "AWS_HTTPS", "AWS_VIRTUAL_HOSTING", "GDAL_HTTP_TIMEOUT", "GDAL_HTTP_MAX_RETRY",
                    "GDAL_HTTP_CONNECTTIMEOUT", "GDAL_HTTP_RETRY_DELAY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
            env.pop(key, None)
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="stall-test-key",
                              aws_secret_access_key="stall-test-secret")
        client.create_bucket(Bucket=BUCKET)
        yield proc, env, client
    finally:
        try:
            proc.send_signal(signal.SIGCONT)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _run(args, env, bound=60):
    """The command line as a subprocess; fails the test if it is still running after ``bound`` seconds."""
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "rastalign.cli.vhr", *map(str, args)], capture_output=True, text=True,
                       env=env, timeout=bound)
    return r, time.monotonic() - t0


def _one_line(r):
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def _waited(line):
    """The ``after N s`` of a time-out line."""
    return float(re.search(r"the object store timed out after ([\d.]+) s \(no answer; "
                           rf"RASTALIGN_STORE_TIMEOUT={TIMEOUT} s\)", line).group(1))


def _settled(client, key, within=15.0):
    """Once the server answers again, the requests it held are handled: wait until no upload is pending."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if not client.list_multipart_uploads(Bucket=BUCKET).get("Uploads"):
            break
        time.sleep(0.2)
    time.sleep(0.5)
    return client.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def _absent(client, key):
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=BUCKET, Key=key)
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound")
    return False


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from rastalign.testing.pairs import write_pair

    d = tmp_path_factory.mktemp("stall_pair")
    moving, fixed, _ = write_pair(d, (600, 520), rotation_deg=0.3, shift=(4.2, -2.6), bands=2, seed=8)
    return moving, fixed


@pytest.mark.slow  # the command line against a paused server: 7-15 s
def test_reads_from_a_paused_store_time_out_in_one_line(pair, tmp_path):
    """s3:// inputs, the server paused before the command starts: GDAL's requests get no answer; the command
    says that the store timed out and after how long (it said "not a readable raster" after 95 s)."""
    with moto_process() as (proc, env, client):
        for p in pair:
            client.upload_file(str(p), BUCKET, f"pair/{p.name}")
        proc.send_signal(signal.SIGSTOP)
        r, took = _run(["--moving-image", f"s3://{BUCKET}/pair/moving.tif", "--fixed-image",
                        f"s3://{BUCKET}/pair/fixed.tif", "--output-image", tmp_path / "out.tif"], env)
        assert _state(proc.pid) == "T"  # still paused: nothing answered
    line = _one_line(r)
    assert r.returncode == 2, r.stderr
    assert line.startswith(f"vhr-align-image-pair: error: cannot read s3://{BUCKET}/pair/moving.tif: "
                           f"the object store timed out after "), line
    waited = _waited(line)
    assert TIMEOUT <= waited < TIMEOUT + 5 and took < waited + 15, (waited, took)
    assert "stall-test-secret" not in r.stderr and not list(tmp_path.iterdir())


@pytest.mark.slow  # the command line against a paused server: 7-15 s
def test_a_store_that_stops_answering_during_the_pixel_reads_fails_in_one_line(pair, tmp_path):
    """s3:// inputs whose headers were read: the server pauses itself on the first request for tiles. GDAL's
    warnings stay off stderr; the one line says that the store timed out (it said "not a readable raster").
    GDAL retries a failed tile several times over, so this takes a few times the setting."""
    with moto_process("pixels") as (proc, env, client):
        for p in pair:
            client.upload_file(str(p), BUCKET, f"pair/{p.name}")
        r, took = _run(["--moving-image", f"s3://{BUCKET}/pair/moving.tif", "--fixed-image",
                        f"s3://{BUCKET}/pair/fixed.tif", "--output-image", tmp_path / "out.tif"], env)
        assert _state(proc.pid) == "T"
    line = _one_line(r)
    assert r.returncode == 2, r.stderr
    assert re.match(rf"vhr-align-image-pair: error: cannot read s3://{BUCKET}/pair/(moving|fixed)\.tif: the object "
                    rf"store timed out after ", line), line
    waited = _waited(line)
    assert TIMEOUT <= waited < 8 * TIMEOUT and took < waited + 20, (waited, took)
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # the command line against a paused server: 7-15 s
def test_a_store_that_stops_answering_during_the_upload_fails_in_one_line(pair, tmp_path):
    """A COG to s3:// from local inputs: the server pauses itself on the first part of the upload. The command
    gives up after the store timeout, aborts the multipart upload and says so in one line; once the server
    answers again there is nothing at the output key and no upload pending (it hung for minutes before)."""
    moving, fixed = pair
    key = "out/aligned.tif"
    with moto_process("upload_part") as (proc, env, client):
        r, took = _run(["--moving-image", moving, "--fixed-image", fixed, "--output-image", f"s3://{BUCKET}/{key}",
                        "--output-format", "COG"], env)
        assert _state(proc.pid) == "T"  # the server did stop during the upload
        proc.send_signal(signal.SIGCONT)
        pending = _settled(client, key)
        absent = _absent(client, key)
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    line = _one_line(r)
    assert r.returncode == 2, r.stderr
    url = f"s3://{BUCKET}/{key}"
    assert line.startswith(f"vhr-align-image-pair: error: cannot write output {url}: the object store timed out "
                           f"after "), line
    assert re.search(r"; the multipart upload was aborted( \(not confirmed by the store\))?, nothing "
                     rf"was written at {re.escape(url)}$", line), line
    waited = _waited(line)
    assert TIMEOUT <= waited < TIMEOUT + 2 and took < waited + 30, (waited, took)
    assert absent and not pending, (keys, pending)
    assert key not in keys and not [k for k in keys if "rastalign-tmp" in k], keys


@pytest.mark.slow  # the command line against a paused server: 7-15 s
def test_a_zarr_store_whose_server_stops_answering_fails_in_one_line(pair, tmp_path):
    """Zarr to s3://, its chunks written into a temporary prefix: the server pauses itself on the first chunk.
    One line says the store timed out; nothing is published at the output key."""
    moving, fixed = pair
    url = f"s3://{BUCKET}/out/aligned.zarr"
    with moto_process("temporary_store") as (proc, env, client):
        r, took = _run(["--moving-image", moving, "--fixed-image", fixed, "--output-image", url], env)
        assert _state(proc.pid) == "T"
        proc.send_signal(signal.SIGCONT)
        time.sleep(1.0)
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    line = _one_line(r)
    assert r.returncode == 2, r.stderr
    assert line.startswith(f"vhr-align-image-pair: error: cannot write output {url}: the object store timed out "
                           f"after "), line
    assert re.search(r"; the temporary store s3://\S+/out/\.aligned\.zarr\.rastalign-tmp-\w+\.zarr may remain "
                     r"\(remove it once the store answers\)$", line), line
    waited = _waited(line)
    assert TIMEOUT <= waited < TIMEOUT + 2 and took < 45, (waited, took)
    assert not [k for k in keys if k.startswith("out/aligned.zarr")], keys


def test_the_store_timeout_setting(monkeypatch):
    """RASTALIGN_STORE_TIMEOUT: 60 s by default, any positive number of seconds, anything else one line; it
    bounds GDAL's reads and every request of the S3 file system."""
    from rastalign.errors import InputError

    monkeypatch.delenv("RASTALIGN_STORE_TIMEOUT", raising=False)
    assert paths.store_timeout() == 60
    gdal = paths.gdal_store_settings()
    assert float(gdal["GDAL_HTTP_TIMEOUT"]) * (int(gdal["GDAL_HTTP_MAX_RETRY"]) + 2) == pytest.approx(60)
    monkeypatch.setenv("RASTALIGN_STORE_TIMEOUT", "4.5")
    assert paths.store_timeout() == 4.5
    pytest.importorskip("s3fs")
    fs = paths.s3_filesystem()
    assert fs.store_timeout == 4.5 and fs.retries == 1
    assert fs.config_kwargs["read_timeout"] == pytest.approx(1.5)
    assert fs.config_kwargs["retries"] == {"total_max_attempts": 3, "mode": "standard"}
    for bad in ("0", "-3", "soon", "nan", "inf"):
        monkeypatch.setenv("RASTALIGN_STORE_TIMEOUT", bad)
        with pytest.raises(InputError, match=r"RASTALIGN_STORE_TIMEOUT must be a number of seconds greater than 0"):
            paths.store_timeout()


@pytest.mark.slow  # the command line against a paused server: 7-15 s
def test_fits_frames_from_a_paused_store_time_out_in_one_line(tmp_path):
    """s3:// FITS frames (read through astropy and fsspec, not GDAL), the server paused before the command:
    the same one line, after about the setting."""
    from rastalign.testing.stars import write_star_pair

    src, tmpl, _ = write_star_pair(tmp_path / "in", (256, 256), 120, shift=(2.5, -1.5), seed=3)
    with moto_process() as (proc, env, client):
        for p in (src, tmpl):
            client.upload_file(str(p), BUCKET, f"stars/{p.name}")
        proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "rastalign.cli.fits", f"s3://{BUCKET}/stars/{src.name}",
                            str(tmp_path / "out.fits"), "-tf", f"s3://{BUCKET}/stars/{tmpl.name}"],
                           capture_output=True, text=True, env=env, timeout=90)
        took = time.monotonic() - t0
        assert _state(proc.pid) == "T"
    line = _one_line(r)
    assert r.returncode == 2, r.stderr
    assert line.startswith(f"align-fits: error: cannot read s3://{BUCKET}/stars/{src.name}: the object store "
                           f"timed out after "), line
    assert TIMEOUT <= _waited(line) < TIMEOUT + 8 and took < 60, (line, took)
    assert not (tmp_path / "out.fits").exists()
