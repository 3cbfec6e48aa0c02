"""A pair in object storage, aligned on a remote cluster: what it costs against local files.

A local S3-compatible server (moto's, in this process, on 127.0.0.1) holds a synthetic uint16 pair of
``--size``^2 px; a scheduler and two workers run as separate processes, each in an empty folder.
``vhr-align-image-pair`` runs in a client process of its own for: local files under local threads;
``s3://`` inputs on the cluster to an ``s3://`` Zarr; the same to an ``s3://`` COG; and
``rastalign.estimate`` alone on the cluster. The inputs are COGs with overviews, as object storage
holds them (``--no-cog-inputs``: plain tiled GeoTIFFs, which estimation must read whole). For each: wall time, the client's bytes read from files
and pipes and received from dask's comms, its peak RSS, and the bytes the server sent (every GET)
against the size of the inputs: estimation should fetch a small fraction of each input, the warp
the moving image once.

    python benchmarks/cloud.py [--size 8192]

Writes ``benchmarks/results/cloud.json`` (machine, date, commit) and prints a table.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _measure import write_results  # noqa: E402  (before distributed.py takes this folder off sys.path)

BUCKET = "rastalign-bench"
_spec = importlib.util.spec_from_file_location("bench_distributed", HERE / "distributed.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)  # its cluster launcher and client probe (it keeps itself off sys.path)

CLIENT = bench.CLIENT.replace("import rastalign.cli.demo,", "import rastalign.cli.vhr,").replace(
    "rastalign.cli.demo.main", "rastalign.cli.vhr.main")
ESTIMATE = bench.CLIENT.replace("rc = rastalign.cli.demo.main(sys.argv[1:])", (
    "from rastalign.runtime.scheduler import use_scheduler\n"
    "with use_scheduler(sys.argv[3]):\n"
    "    est = rastalign.pipelines.pair.estimate(sys.argv[1], sys.argv[2])\n"
    "rc = 0 if est.quality['passed'] else 3"))


class CountingServer:
    """moto's S3 app behind a WSGI layer that counts the body bytes of every GET response."""

    def __init__(self):
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
        app = DomainDispatcherApplication(create_backend_app)
        self.sent, self.lock = 0, threading.Lock()

        def counting(environ, start_response):
            get = environ["REQUEST_METHOD"] == "GET"
            for chunk in app(environ, start_response):
                if get:
                    with self.lock:
                        self.sent += len(chunk)
                yield chunk

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = make_server("127.0.0.1", self.port, counting, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def measured(snippet, args, server):
    before = server.sent
    r = subprocess.run([sys.executable, "-c", snippet, *map(str, args)], capture_output=True, text=True,
                       cwd=tempfile.gettempdir())
    line = [x for x in r.stderr.strip().splitlines() if x.startswith("{")]
    if r.returncode or not line or json.loads(line[-1])["rc"]:
        raise RuntimeError(f"run failed: {r.stderr.strip()[-800:]}")
    return dict(json.loads(line[-1]), server_sent=server.sent - before)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--workdir", default=None, help="keep the data here (default: a temporary folder, removed)")
    ap.add_argument("--no-cog-inputs", dest="cog_inputs", action="store_false",
                    help="plain tiled GeoTIFF inputs without overviews (estimation then reads them whole)")
    args = ap.parse_args(argv)
    import boto3

    from rastalign.testing.pairs import write_pair

    root = Path(args.workdir or tempfile.mkdtemp(prefix="rastalign_cloud_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    server = CountingServer()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.port}", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1"})
    procs, rows = [], []
    try:
        n = args.size
        moving, fixed, _ = write_pair(root / "data", (n, n), rotation_deg=0.2, shift=(4.3, -2.7), seed=5)
        if args.cog_inputs:  # what object storage holds (Sentinel-2, Landsat, Maxar): COGs with overviews
            from rio_cogeo.cogeo import cog_translate
            from rio_cogeo.profiles import cog_profiles

            for p in (moving, fixed):
                cog_translate(str(p), str(p.with_suffix(".cog.tif")), cog_profiles.get("deflate"), quiet=True)
            moving, fixed = moving.with_suffix(".cog.tif"), fixed.with_suffix(".cog.tif")
        s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for p in (moving, fixed):
            s3.upload_file(str(p), BUCKET, f"in/{p.name}")
        sizes = {"moving": moving.stat().st_size, "fixed": fixed.stat().st_size}
        m_url, f_url = f"s3://{BUCKET}/in/{moving.name}", f"s3://{BUCKET}/in/{fixed.name}"
        pair = ["--moving-image", m_url, "--fixed-image", f_url]
        runs = [("local files, threads", CLIENT, ["--moving-image", moving, "--fixed-image", fixed,
                                                  "--output-image", root / "local.zarr"]),
                ("s3 -> s3 Zarr, remote cluster", CLIENT, pair + ["--output-image", f"s3://{BUCKET}/out/a.zarr",
                                                                  "--scheduler", "ADDR"]),
                ("s3 -> s3 COG, remote cluster", CLIENT, pair + ["--output-image", f"s3://{BUCKET}/out/a.cog.tif",
                                                                 "--scheduler", "ADDR"]),
                ("estimate only, s3, remote cluster", ESTIMATE, [m_url, f_url, "ADDR"])]
        for k, (name, snippet, a) in enumerate(runs):
            if "ADDR" in a:  # a fresh cluster per run: no worker starts with GDAL's cache of the inputs
                for p in procs[::-1]:
                    p.terminate()
                    p.wait(timeout=30)
                (root / f"cluster{k}").mkdir()
                # started after the AWS variables are set: the workers inherit them
                addr, procs = bench.start_cluster(root / f"cluster{k}")
                a = [addr if v == "ADDR" else v for v in a]
            r = measured(snippet, a, server)
            rows.append({"run": name, "wall_s": round(r["wall_s"], 2), "client_read_mb": round(r["rchar"] / 2 ** 20, 1),
                         "client_net_mb": round(r["net"] / 2 ** 20, 1), "client_peak_rss_mb": round(r["peak_rss_mb"]),
                         "server_sent_mb": round(r["server_sent"] / 2 ** 20, 1),
                         "server_sent_over_inputs": round(r["server_sent"] / sum(sizes.values()), 3)})
            print(json.dumps(rows[-1]), flush=True)
    finally:
        for p in procs[::-1]:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        server.stop()
        if not args.workdir:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\ninputs: moving {sizes['moving'] / 2 ** 20:.1f} MB, fixed {sizes['fixed'] / 2 ** 20:.1f} MB ({n}^2 uint16)")
    print(f"{'run':36s} {'wall s':>7s} {'client read MB':>14s} {'client net MB':>13s} {'client RSS MB':>13s} "
          f"{'server sent MB':>14s} {'sent/inputs':>11s}")
    for r in rows:
        print(f"{r['run']:36s} {r['wall_s']:7.1f} {r['client_read_mb']:14.1f} {r['client_net_mb']:13.1f} "
              f"{r['client_peak_rss_mb']:13d} {r['server_sent_mb']:14.1f} {r['server_sent_over_inputs']:11.3f}")
    write_results("cloud", rows, size=n, inputs_mb={k: round(v / 2 ** 20, 1) for k, v in sizes.items()}, cog_inputs=args.cog_inputs)
    return rows


if __name__ == "__main__":
    main()
