"""One wording for an adaptor's size: the selection's summary and the
model built on the selection file say the same number of adaptor tensors
per gear (the selected tensors plus the BN buffers that go with them)."""

import json

from mmseg.registry import MODELS
from toys import tiny_segmentor

from mmseg_gearnn.models.adaptor_tensors import adaptor_size_text
from mmseg_gearnn.selection import run_selection
from mmseg_gearnn.selection.record import format_selection_table

SPACE = dict(distortions=dict(brightness=[0.5]))


def test_selection_summary_and_model_say_the_same(tmp_path):
    path = tmp_path / 'selection.json'
    record = run_selection(
        MODELS.build(tiny_segmentor((32, 32))),
        SPACE,
        'bn',
        budget=0.5,
        progress=False,
        out=str(path),
    )
    model = MODELS.build(
        dict(
            type='GearNNSegmentor',
            segmentor=tiny_segmentor((32, 32)),
            space=SPACE,
            adaptor=str(path),
        )
    )
    held = len(model.adaptor_names)
    selected = len(json.loads(path.read_text())['selected'])
    # 'bn' selects BN weights, biases and statistics; each layer's step
    # counter goes with its statistics.
    assert held > selected
    table = format_selection_table(record)
    assert (
        f'{held} adaptor tensors per gear ({selected} selected + '
        f'{held - selected} BN buffers that go with them)'
    ) in table
    assert f'selected {selected} of' not in table
    # What the training log says of the model's adaptor.
    assert adaptor_size_text(model.adaptor_names).startswith(
        f'{held} adaptor tensors per gear'
    )


def test_wording():
    assert adaptor_size_text(['a.weight']) == '1 adaptor tensor per gear'
    assert adaptor_size_text(
        ['bn.weight', 'bn.running_mean'], fraction=0.0025
    ) == (
        '4 adaptor tensors per gear (2 selected + 2 BN buffers that go '
        'with them; 0.2500% of the model)'
    )
