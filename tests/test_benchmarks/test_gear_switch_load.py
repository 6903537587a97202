"""benchmarks/gear_switch_load.py: frames through the inferencer with a gear
change on every frame, and no memory growth after the warm-up."""

import pytest
import torch

import gear_switch_load

FRAMES = 1000
SIZE = (32, 32)
# Well above the noise of a steady process (tens of KiB), well below what
# keeping each frame's output would add: a 32x32 frame's sample holds
# 8 x 32 x 32 float32 logits, 32 KiB, so 1,000 frames keep about 31 MiB.
BOUND_MB = 8.0


@pytest.fixture(scope='module')
def load():
    torch.set_num_threads(1)
    return gear_switch_load, gear_switch_load.build_inferencer()


@pytest.mark.slow
def test_gear_change_every_frame_without_memory_growth(load):
    module, inferencer = load
    result = module.run_load(
        inferencer, FRAMES, size=SIZE, warmup=100, trace_every=500
    )
    # Every frame switched the adaptor (the clean gear included).
    assert result['gear_switches'] == FRAMES
    assert result['num_gears'] == inferencer.space.num_gears > 2
    assert len(result['rss_trace_mb']) == FRAMES // 500
    assert result['growth_mb'] < BOUND_MB, result
    assert result['peak_growth_mb'] < BOUND_MB, result


@pytest.mark.slow
def test_a_leak_would_be_caught(load):
    # The control: the same run keeping every frame's output, as a leak
    # in the inference path would, must exceed the bound.
    module, inferencer = load
    kept = []
    result = module.run_load(
        inferencer,
        FRAMES,
        size=SIZE,
        warmup=100,
        trace_every=500,
        # What keeping each frame's logits would hold.
        on_frame=lambda mask, record: kept.append(torch.ones(8, *SIZE)),
    )
    assert len(kept) == FRAMES
    assert result['growth_mb'] > BOUND_MB, result
