"""What a FITS pair run pays besides its own work: its estimation's small dense solves run with BLAS on one
thread, as the raster pair's do (OpenBLAS's idle threads spin against the detection and fitting on a busy
machine), and the caller's BLAS threads are given back afterwards."""
import pytest
from threadpoolctl import threadpool_info

import rastalign.pipelines.fits_pair as fits_pair


def _blas_threads():
    return sorted({lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"})


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    from rastalign.testing.stars import write_star_pair

    d = tmp_path_factory.mktemp("fitsblas")
    src, tmpl, _ = write_star_pair(d, (256, 256), 150, rotation_deg=1.0, shift=(3.5, -2.25), seed=4)
    return src, tmpl


def test_the_star_fit_runs_with_blas_on_one_thread_and_gives_the_threads_back(frames, monkeypatch):
    src, tmpl = frames
    seen, fit = [], fits_pair.fit_detections

    def spy(*args, **kwargs):
        seen.append(_blas_threads())
        return fit(*args, **kwargs)

    monkeypatch.setattr(fits_pair, "fit_detections", spy)
    before = _blas_threads()
    model, ev = fits_pair.estimate_fits(str(src), str(tmpl), spline_order=0)
    assert seen == [[1]]
    assert ev["stats"]["n_matched"] > 20 and model.field is None
    assert _blas_threads() == before
