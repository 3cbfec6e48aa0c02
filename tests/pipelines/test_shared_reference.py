"""A stack's reference is prepared once: its proxy read once, its pyramid built once per crop and mask, and a
scene's estimation against it is the estimation against the reference's file."""
import numpy as np

import rastalign
from rastalign.pipelines.stack import _share_reference
from rastalign.testing.pairs import write_stack
from rastalign.tiepoints import pyramid

TRUTHS = [dict(shift=(3.3, -2.1), rotation_deg=0.05), dict(shift=(-4.2, 1.7), rotation_deg=-0.07)]


def test_the_reference_pyramid_is_built_once_and_changes_nothing(tmp_path, monkeypatch):
    ref, scenes, _ = write_stack(tmp_path, TRUTHS, (384, 384), seed=5)
    built = []
    real = pyramid.proxy_levels

    def counted(img, valid, *args, **kw):
        built.append(img.shape)
        return real(img, valid, *args, **kw)

    monkeypatch.setattr(pyramid, "proxy_levels", counted)
    monkeypatch.setattr("rastalign.pipelines.pair.proxy_levels", counted, raising=False)
    alone = [rastalign.estimate(str(s), str(ref)) for s in scenes]
    n_alone, built[:] = len(built), []
    shared = _share_reference("vhr", str(ref), {})["reference"]
    together = [rastalign.estimate(str(s), shared) for s in scenes]
    # the second scene reuses the first one's reference pyramid: one fewer built, nothing else changes
    assert len(built) == n_alone - 1
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a.model.affine, b.model.affine)
        assert a.quality["n_inliers"] == b.quality["n_inliers"]


def test_a_derived_product_is_remade_for_another_mask(tmp_path):
    ref, _, _ = write_stack(tmp_path, TRUTHS[:1], (256, 256), seed=6)
    proxy = _share_reference("vhr", str(ref), {})["reference"].proxy
    made = []
    mask = np.ones((8, 8), bool)
    for m in (mask, mask.copy(), ~mask, ~mask):
        proxy.derived("k", m, lambda: made.append(1) or len(made))
    assert made == [1, 1]  # once for the first mask, once for the other
    assert proxy.derived("other key", ~mask, lambda: "new") == "new"
