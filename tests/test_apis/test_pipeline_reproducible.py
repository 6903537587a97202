"""The demo pipeline is reproducible run to run: one thread count (the
order of floating-point sums follows it) and torch's deterministic
algorithms while it runs, restored after; every run seeded."""

import pytest
import torch
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from toys import tiny_segmentor

from mmseg_gearnn.apis.pipeline import reproducible, seeded_options


def _batch(n: int = 2, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(1)
    samples = []
    for _ in range(n):
        sample = SegDataSample(
            metainfo=dict(img_shape=(size, size), ori_shape=(size, size))
        )
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 8, (1, size, size), generator=g)
        )
        samples.append(sample)
    inputs = [
        torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        for _ in range(n)
    ]
    return dict(inputs=inputs, data_samples=samples)


def _train_steps(steps: int = 3) -> dict:
    """A few AdamW steps of the tiny segmentor from seed 0."""
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(tiny_segmentor())
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    batch = _batch()
    for _ in range(steps):
        data = model.data_preprocessor(batch, True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_same_bits_whatever_the_machine_threads():
    ambient = torch.get_num_threads()
    try:
        # What the fixed count is for: the bits follow the threads.
        torch.set_num_threads(1)
        one = _train_steps()
        torch.set_num_threads(3)
        assert not _same(one, _train_steps())
        results = []
        for machine_threads in (1, 3):
            torch.set_num_threads(machine_threads)
            with reproducible(threads=1):
                assert torch.get_num_threads() == 1
                assert torch.are_deterministic_algorithms_enabled()
                results.append(_train_steps())
            # Restored after.
            assert torch.get_num_threads() == machine_threads
            assert not torch.are_deterministic_algorithms_enabled()
        assert _same(*results)
    finally:
        torch.set_num_threads(ambient)


def test_every_run_is_seeded_and_options_win():
    assert seeded_options(None, 0, True) == {
        'randomness.seed': 0,
        'env_cfg.cudnn_benchmark': False,
    }
    assert seeded_options(None, 3, False) == {'randomness.seed': 3}
    # A user's own option is kept.
    assert seeded_options({'randomness.seed': 5}, 0, True) == {
        'randomness.seed': 5,
        'env_cfg.cudnn_benchmark': False,
    }


def test_deterministic_warns_where_torch_has_no_such_algorithm():
    """A GPU backward without a deterministic kernel must not stop a run;
    the flags come back after."""
    with reproducible(deterministic=True):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


@pytest.mark.faults
def test_no_threads_is_one_clear_error():
    with pytest.raises(ValueError, match='threads must be at least 1'):
        with reproducible(threads=0):
            pass
