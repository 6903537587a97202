"""Tensors of modules unused at inference (an mmseg ``auxiliary_head``)
are no adaptor candidates: not scored, not selected, not in the ``'bn'`` or
``'all'`` adaptors, whatever ``exclude_modules`` says."""

import json

from mmseg.registry import MODELS
from toys import tiny_segmentor

from mmseg_gearnn.models import adaptor_candidates, bn_names
from mmseg_gearnn.selection import list_candidates, run_selection

SPACE = dict(distortions=dict(brightness=[0.5]))
AUX = 'auxiliary_head.'


def _with_auxiliary_head() -> dict:
    cfg = tiny_segmentor((32, 32))
    cfg['auxiliary_head'] = dict(
        cfg['decode_head'],
        channels=4,
        loss_decode=dict(type='CrossEntropyLoss', loss_weight=0.4),
    )
    return cfg


def test_auxiliary_head_tensors_are_no_candidates():
    model = MODELS.build(_with_auxiliary_head())
    assert model.with_auxiliary_head
    assert any(n.startswith(AUX) for n, _ in model.named_parameters())
    for names in (
        list(adaptor_candidates(model)),
        [t.name for t in list_candidates(model)],
        bn_names(model),
    ):
        assert names
        assert not [n for n in names if n.startswith(AUX)]
    # The decode head's are candidates as before.
    assert any(n.startswith('decode_head.') for n in adaptor_candidates(model))


def test_no_selection_picks_them():
    model = MODELS.build(_with_auxiliary_head())
    record = run_selection(
        model,
        SPACE,
        'all',
        progress=False,
        budget=1.0,
        respect_budget=True,
        exclude_modules=(),
    )
    assert record['selected']
    assert not [n for n in record['selected'] if n.startswith(AUX)]
    assert not [t for t in record['tensors'] if t['name'].startswith(AUX)]


def test_bn_and_all_adaptors_leave_them_out():
    for adaptor in ('bn', 'all'):
        model = MODELS.build(
            dict(
                type='GearNNSegmentor',
                segmentor=_with_auxiliary_head(),
                space=SPACE,
                adaptor=adaptor,
            )
        )
        assert model.adaptor_names
        assert not [n for n in model.adaptor_names if n.startswith(AUX)]


def test_a_file_that_lists_them_still_loads(tmp_path):
    """A selection file written while the auxiliary head's tensors were
    candidates lists them (unselected): it still builds the model."""
    segmentor = MODELS.build(_with_auxiliary_head())
    tensors = dict(segmentor.state_dict())
    selected = ['decode_head.conv_seg.weight']
    listed = selected + ['auxiliary_head.conv_seg.weight']
    path = tmp_path / 'selection.json'
    path.write_text(
        json.dumps(
            dict(
                format_version=1,
                method='fisher',
                tensors=[
                    dict(
                        name=n,
                        numel=tensors[n].numel(),
                        selected=n in selected,
                    )
                    for n in listed
                ],
                selected=selected,
                budget=dict(),
                distortion_space=SPACE,
                model_total_bytes=1,
            )
        )
    )
    model = MODELS.build(
        dict(
            type='GearNNSegmentor',
            segmentor=_with_auxiliary_head(),
            space=SPACE,
            adaptor=str(path),
        )
    )
    assert model.adaptor_names == selected
