"""BENCHMARKS.md is rendered from one run's rows (scripts/bench_report.py, docs/bench/template.md): every
placeholder gets a value from them, a missing value stops the render, a changed row changes the page, and the
hand-written notes (docs/bench/notes.md) stand in their own dated section. The rows here are made up: this
checks the rendering, not any method."""
import pytest

import bench_quality as bq
import bench_report

pytestmark = pytest.mark.fast

CACHEKIT = {"First Block Cache": "First Block Cache (diffusers)", "PAB": "PAB (diffusers)",
            "FasterCache": "FasterCache (diffusers)", "TeaCache (calibrated)": None}
OTHERS = ["First Block Cache (diffusers)", "PAB (diffusers)", "FasterCache (diffusers)",
          "EasyCache (ComfyUI, copy fix)"]


def rows() -> list[dict]:
    out = []
    for fi, family in enumerate(("wan", "flux")):
        for mi, method in enumerate([*CACHEKIT, *OTHERS]):
            for si, setting in enumerate((0.03, 0.1, 0.25)):
                out.append(dict(family=family, method=method, knob="threshold", setting=setting,
                                block_flops=0.9 - 0.25 * si - 0.01 * mi, psnr=50.0 - 7.0 * si - mi - fi + 0.123,
                                psnr_min=40.0 - 7.0 * si - mi, ssim=0.99, images=12,
                                reference=CACHEKIT.get(method)))
        out.append(dict(family=family, method=bq.UNCACHED_REFERENCE, knob="-", setting="-", block_flops=1.0,
                        psnr=99.0, psnr_min=99.0, ssim=1.0, images=12, reference=None))
    return out


SPEED = dict(model="a tiny Wan", tokens=256, steps=20, cfg=4.0, reps=5, block_share=0.8, rss_run10_mib=901.0,
             rss_run50_mib=903.0, rows=[dict(method="PAB", block_flops=0.5, ideal=1.67, measured=1.5,
                                             efficiency=0.9, overhead=0.01, held_mib={"cond": 1.0},
                                             host_syncs_per_call=0.05)])
TIMES = {"train wan + flux": 300.0, "quality": 900.0, "speed": 200.0, "tuning": 100.0, "total": 1500.0}


def render(rows_=None, speed=SPEED):
    return bench_report.render(TIMES, rows() if rows_ is None else rows_, speed, "| a tuning table |", "a machine")


def test_every_placeholder_is_filled_from_the_rows():
    doc = render()
    assert "$" not in doc
    for r in rows():
        if r["method"] != bq.UNCACHED_REFERENCE:
            assert f"| {r['method']} | {r['knob']} | {r['setting']} | {r['block_flops']:.1%} | {r['psnr']:.2f} /" in doc
    assert "The full run took 25 minutes" in doc and "a machine" in doc and "| a tuning table |" in doc
    assert "901 MiB after run 10, 903 MiB after run 50" in doc


def test_a_changed_row_changes_the_page_and_a_missing_value_stops_it():
    changed = rows()
    changed[0]["psnr"] = 12.345
    assert "12.35 /" in render(changed) and "12.35 /" not in render()
    with pytest.raises(KeyError):
        render(speed={k: v for k, v in SPEED.items() if k != "rss_run50_mib"})


def test_the_notes_are_their_own_dated_section():
    doc = render()
    notes = (bench_report.DOCS / "notes.md").read_text().strip()
    section = doc.split("\n## Notes\n", 1)[1].split("\n## ", 1)[0]
    assert notes in section
    assert all(line.startswith("- **20") for line in notes.splitlines() if line.startswith("- "))   # each dated


def test_few_step_table_picks_the_most_saving_setting_above_the_floor():
    """scripts/bench_few_steps.py's table, on made-up rows: the setting that saved most while holding the floor, the
    most any setting saved, and "-" / "none" where nothing was saved or nothing held the floor."""
    import bench_few_steps as fs

    def row(method, setting, flops, psnr):
        return dict(family="wan", steps=4, method=method, knob="threshold", setting=setting, block_flops=flops,
                    psnr=psnr, psnr_min=psnr - 1)
    text = fs.markdown([row("A", 0.1, 0.9, 45.0), row("A", 0.2, 0.7, 31.0), row("A", 0.4, 0.5, 25.0),
                        row("B", 0.1, 1.0, 99.0), row("C", 0.3, 0.6, 20.0)], floor=30.0)
    lines = {line.split(" | ")[2]: line for line in text.splitlines() if line.startswith("| wan")}
    assert lines["A"] == "| wan | 4 | A | threshold=0.2 | 70% | 31.0 | 50% (25.0 dB) |"
    assert lines["B"] == "| wan | 4 | B | - | 100% |  | none |"
    assert lines["C"] == "| wan | 4 | C | - | 100% |  | 40% (20.0 dB) |"


def test_goals_name_the_best_method_per_model_at_each_fraction():
    """The 256-token models take part in the goals (not in the reference comparisons, measured on the first two): the
    best CacheKit method at 20 / 30 / 50% of block FLOPs, its PSNR interpolated on its own curve."""
    big = [dict(family="wan16", method=m, knob="threshold", setting=i, block_flops=f, psnr=p, psnr_min=p - 1,
                ssim=0.99, images=6, reference=None)
           for m, pts in {"A": ((0.1, 30.0), (0.6, 70.0)), "B": ((0.25, 50.0), (0.35, 40.0)),
                          "EasyCache (ComfyUI, copy fix)": ((0.2, 80.0), (0.6, 90.0))}.items()
           for i, (f, p) in enumerate(pts)]
    goals = bench_report.goals(rows() + big)
    assert "wan16: 20% 38.0 dB (A; missed), 30% 46.0 dB (A; met), 50% 62.0 dB (A; met)" in goals["frontier"]
    assert "wan16" not in goals["vs_references"] and "wan16" not in goals["pab_offsets"]
    assert "(12 / 6 images per point" in render(rows() + big) and "(12 images per point" in render()


def test_the_separate_stages_refresh_their_section_and_the_notes_in_place(tmp_path):
    """make bench-quantized and make bench-lora run outside make bench's time: each puts the quantized / LoRA section
    and the notes into the page on disk, inserted where the template has it or replacing it, leaving the rest as the
    full run wrote it (the page is then what a render would give)."""
    full = render()
    sep = bench_report.SEPARATE
    before, rest = full.split(f"\n{sep}\n", 1)
    after = rest.split("\n## ", 1)[1]
    older = f"{before}\n## {after}".replace("\n## Notes\n", "\n## Notes\n\n- **2020-01-01** an old note\n", 1)
    page = tmp_path / "BENCHMARKS.md"
    for start in (older, full.replace("| model | method | weights |", "| stale |", 1)):
        page.write_text(start)
        bench_report.refresh_in_place(page)
        assert page.read_text() == full
    assert "#### wan" in full.split(f"\n{sep}\n", 1)[1].split("\n## ", 1)[0]    # the LoRA summary, a level down
    assert "Block FLOPs / PSNR (dB) of each setting" not in full                 # its per-setting rows stay in lora.md


def test_the_quantized_page_says_whether_settings_need_retuning():
    import bench_quantized as bqz

    def summary(move: float) -> list[dict]:
        return [dict(family="wan", method="First Block Cache", weights=w, half_fraction=0.5 + (i > 0) * move * i,
                     at_50=40.0 + i) for i, w in enumerate(bqz.WEIGHTS)]
    calm, moved = bqz.verdict(summary(0.01)), bqz.verdict(summary(0.04))
    assert "need no change" in calm and f"{bqz.WEIGHTS[-1]} within {100 * 0.01 * (len(bqz.WEIGHTS) - 1):.1f}" in calm
    assert "retune" in moved and "need no change" not in moved
    assert f"(PSNR at 50% +{len(bqz.WEIGHTS) - 1:.1f} to +{len(bqz.WEIGHTS) - 1:.1f} dB)" in calm
