"""What scripts/bench_memory.py says a method's cache holds at a size is what the engine reports when sampling at
that size: for every registered method and every row of its table (defaults, EXAMPLES cases, memory options), a
run at one small size, mapped to another small size, equals the held_bytes a run at that other size reports
through comfy.sample. The real-size numbers (BENCHMARKS.md, "Memory at real sizes") are the same mapping to the
real sizes. The node's summary shows the most one stream held."""
import re
from dataclasses import replace

import pytest
import torch

import bench_memory as bm
from harness import pack
from harness import tiny_models as tm
from harness.node_calls import fbc, last_stats

STEPS = 12      # Spectrum's defaults (5 first and 3 last steps computed) forecast a few in between
BLOCKS = 10     # DBCache's default 8 front blocks leave a span
# a second small size, every width and token count other than the script's small ones
OTHER = {"wan": dict(config=dict(dim=60, ffn_dim=76), latent=(16, 3, 10, 22), text=11),
         "flux": dict(config=dict(hidden_size=64, num_heads=2), latent=(16, 14, 14), text=11)}


def at(family: str, other: bool = False) -> bm.Family:
    f = replace(bm.with_blocks(bm.SMALL[family], BLOCKS), steps=STEPS)
    if not other:
        return f
    o = OTHER[family]
    return replace(f, config=f.config | o["config"], latent=o["latent"], text=o["text"])


ROWS = [(key, label) for key, cls in pack.method_nodes().items() for label in bm.settings(key, cls)]


@pytest.mark.parametrize("family", ["wan", "flux"])
@pytest.mark.parametrize("key, label", ROWS)
def test_held_bytes_mapped_to_another_size_are_what_the_engine_reports_there(ck, key, label, family):
    cls = pack.method_nodes()[key]
    inputs = bm.settings(key, cls)[label]
    small, other = at(family), at(family, other=True)
    measured, there = bm.measure(ck, cls, inputs, small), bm.measure(ck, cls, inputs, other)
    # the recorded tensors are what the run's stats count, at both sizes
    assert {k: bm.nbytes(v) for k, v in measured["streams"].items()} == measured["reported"]
    assert {k: bm.nbytes(v) for k, v in there["streams"].items()} == there["reported"]
    mapped = bm.held_at(measured, small, other)
    assert mapped["streams"] == there["reported"]
    assert mapped["states"] == {k: bm.nbytes(v) for k, v in there["states"].items()}   # the part an option moves
    assert mapped["run_level"] == bm.nbytes(there["run_level"])
    assert max(there["reported"].values()) > 0, "the row holds nothing: it checks no mapping"


def test_the_real_classes_on_meta_have_the_blocks_the_small_ones_run():
    models = bm.real_models()
    assert models["wan"]["blocks"] == 40 and 14.2e9 < models["wan"]["parameters"] < 14.4e9
    assert models["flux"]["blocks"] == 57 and 11.8e9 < models["flux"]["parameters"] < 12.0e9
    assert models["wan"]["sizes"]["tokens"] == 21 * 45 * 80 and models["flux"]["sizes"]["joint"] == 4096 + 512


def test_a_size_two_axes_share_is_refused():
    with pytest.raises(ValueError, match="distinct small sizes"):
        bm.scaled([((1, 8, 8), bm.torch.float32)], {"a": 8, "b": 8}, {"a": 100, "b": 200})
    assert bm.scaled([((1, 16, 8), bm.torch.bfloat16)], {"a": 8}, {"a": 100}) == 16 * 100 * 2


UNITS = {"B": 1, "KiB": 2 ** 10, "MiB": 2 ** 20, "GiB": 2 ** 30}


def test_the_summary_shows_what_the_largest_stream_held(ck):
    """First Block Cache on the tiny Wan holds two tensors of one stream's hidden state (1 x 64 tokens x 64, fp32) per
    stream: 32 KiB, shown under the node."""
    m, lat, pos, neg = tm.wan()
    tm.sample(fbc(ck, m, 0.3), lat, pos, neg, steps=8, cfg=3.0)
    run = last_stats(ck)
    held = max(s["held_bytes"] for s in run["streams"].values())
    assert held == 2 * 64 * 64 * 4
    value, unit = re.search(r"blocks saved · ([\d.]+) (B|KiB|MiB|GiB) held per stream · [\d.]+ s$",
                            run["summary"]).groups()
    assert (value, unit) == ("32", "KiB") and float(value) * UNITS[unit] == held


@pytest.mark.parametrize("n, text", [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (9.9 * 2 ** 20, "9.9 MiB"),
                                     (9.96 * 2 ** 20, "10 MiB"), (48 * 2 ** 20 + 5, "48 MiB"),
                                     (774144000, "738 MiB"), (int(1.5 * 2 ** 40), "1.5 TiB")])
def test_readable_bytes(ck, n, text):
    assert ck.cache_core.stats.readable_bytes(int(n)) == text


def test_the_page_shows_what_the_script_computes_now(ck):
    """BENCHMARKS.md's section (docs/bench/memory.md, which the memory stage writes and bench_report.py fills the
    page from) holds First Block Cache's real-size numbers as the script computes them from this code, and a row
    for every registered method."""
    import bench_report
    section = bench_report.memory_section()
    cls = pack.method_nodes()["first_block_cache"]
    inputs = bm.settings("first_block_cache", cls)["defaults"]
    cells = [bm.human(max(bm.held_at(bm.measure(ck, cls, inputs, bm.SMALL[f]), bm.SMALL[f], bm.REAL[f])
                          ["streams"].values())) for f in ("wan", "flux")]
    assert f"| {cls.METHOD} | defaults | {' | '.join(cells)} |" in section
    assert all(f"| {c.METHOD} | defaults |" in section for c in pack.method_nodes().values())
    assert "$memory" in (bench_report.DOCS / "template.md").read_text().split("## Memory at real sizes")[1]


def test_a_component_never_reused_is_not_kept(ck):
    """PAB keeps an attention kind's outputs only where its interval reuses them, and FasterCache only the self
    attention it extrapolates: on Wan (a self and a cross attention of the same shape per block) cross attention
    always computing halves what a stream holds, with the same output as before."""
    from harness.node_calls import fastercache, pab
    m, lat, pos, neg = tm.FAMILIES["wan"]()

    def held(patched):
        out = tm.sample(patched, lat, pos, neg, steps=6, cfg=3.0)
        return out, {k: s["held_bytes"] for k, s in last_stats(ck)["streams"].items()}
    both_out, both = held(pab(ck, m, 2, 2))
    self_out, self_only = held(pab(ck, m, 2, 1))
    assert both["cond"] > 0 and self_only == {k: v // 2 for k, v in both.items()}
    assert not torch.equal(self_out, both_out)            # cross attention computed where it was reused before
    _, faster = held(fastercache(ck, m, 2, 2))
    assert faster["cond"] == 2 * self_only["cond"]        # keep = 2: the last two self attention outputs per block
