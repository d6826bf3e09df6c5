"""HunyuanDiT's second-half blocks take a first-half block's output as a long skip. A block that computes after
a reused span (DBCache's back blocks) must get this step's skip, from a front block that computed; a setting
whose back blocks would take their skip from inside the cached span is refused at the node."""
import pytest
import torch

from harness import tiny_models as tm
from harness.node_calls import STEPS, dbcache, last_stats

pytestmark = pytest.mark.every_runtime   # what can differ between ComfyUI versions: make test runs it on each


def test_back_block_takes_the_skip_of_the_step_it_runs_in(ck):
    m, lat, pos, neg = tm.hunyuan_dit()            # 6 blocks: block 5 takes block 0's output, block 4 block 1's
    patched = dbcache(ck, m, 0.99, fn=1, bn=1)
    blocks = patched.model.diffusion_model.blocks
    first_out, last_skip = [], []
    hooks = [blocks[0].register_forward_hook(lambda mod, a, o: first_out.append(o.clone())),
             blocks[-1].register_forward_pre_hook(lambda mod, a: last_skip.append(a[4].clone()))]
    try:
        tm.sample(patched, lat, pos, neg, steps=STEPS, cfg=1.0)
    finally:
        for h in hooks:
            h.remove()
    assert last_stats(ck)["streams"]["cond"]["reused_steps"]
    assert len(first_out) == len(last_skip) == STEPS          # front and back blocks compute on every call
    assert all(torch.equal(o, s) for o, s in zip(first_out, last_skip))


@pytest.mark.parametrize("build, name, fn, bn, consumer, source, allowed", [
    (tm.hunyuan_dit, "HunyuanDiT", 1, 2, 4, 1, [(2, 2), (2, 3)]),     # block d-1-i takes block i's; 3 takes none
    (tm.hunyuan3d21, "Hunyuan3D 2.1", 1, 1, 5, 1, [(2, 1), (3, 2)]),  # block d-i takes block i's; 0's is unused
])
def test_back_blocks_whose_skip_comes_from_the_span_are_refused(ck, build, name, fn, bn, consumer, source, allowed):
    m = build()[0]
    with pytest.raises(ValueError, match=f"Apply DBCache: {bn} back blocks with {fn} front blocks: in {name} block "
                                         f"{consumer} takes block {source}'s output as a long skip, and block "
                                         f"{source} sits in the cached span"):
        dbcache(ck, m, 0.1, fn=fn, bn=bn)
    for front, back in allowed:
        dbcache(ck, m, 0.1, fn=front, bn=back)
