"""Resampling: one compiled kernel (:mod:`.kernel`), the chunk planner (:mod:`.plan`)
and the lazy warp over the output chunk grid (:mod:`.graph`)."""
from rastalign.warp.kernel import warp_array, warp_block
from rastalign.warp.plan import WarpPlan, plan_warp

__all__ = ["WarpPlan", "plan_warp", "warp_array", "warp_block"]
