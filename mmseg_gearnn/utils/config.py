"""Config helpers shared by the tools."""

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _set_root(dataset, root: str) -> int:
    if not isinstance(dataset, dict):
        return 0
    count = 0
    if 'data_root' in dataset:
        dataset['data_root'] = root
        count += 1
    count += _set_root(dataset.get('dataset'), root)
    for inner in dataset.get('datasets', None) or []:
        count += _set_root(inner, root)
    return count


def set_data_root(cfg, root: str) -> int:
    """Points every dataloader's dataset (wrappers included) at ``root``.

    A top-level ``data_root`` is copied into the dataloaders when a config
    file is read, so overriding it afterwards moves nothing; this does.

    Returns:
        int: the number of datasets changed.

    Raises:
        ValueError: if no dataset of the config has a ``data_root``.
    """
    cfg['data_root'] = root
    count = sum(
        _set_root(cfg[key].get('dataset'), root)
        for key in DATALOADERS
        if cfg.get(key)
    )
    if count == 0:
        raise ValueError(
            'no dataloader of this config has a data_root to set '
            '(generated datasets read no files)'
        )
    return count


CHECKED_LOADERS = ('LoadCheckedImageFromFile', 'LoadCheckedAnnotations')


def _skip_in(dataset) -> int:
    if not isinstance(dataset, dict):
        return 0
    count = 0
    for step in dataset.get('pipeline', None) or []:
        if step.get('type') in CHECKED_LOADERS:
            step['on_error'] = 'skip'
            count += 1
        elif step.get('type') == 'PackSegInputs':
            if 'meta_keys' not in step:
                from mmseg.datasets.transforms import PackSegInputs

                step['meta_keys'] = PackSegInputs.__init__.__defaults__[0]
            if 'skipped' not in step['meta_keys']:
                step['meta_keys'] = tuple(step['meta_keys']) + ('skipped',)
    count += _skip_in(dataset.get('dataset'))
    for inner in dataset.get('datasets', None) or []:
        count += _skip_in(inner)
    return count


def skip_bad_files(cfg, dataloader: str = 'test_dataloader') -> int:
    """Makes an evaluation skip and report bad image and label files.

    Sets ``on_error='skip'`` on every checked loading transform of the
    dataloader's dataset (wrappers included), adds ``'skipped'`` to
    ``PackSegInputs``'s meta keys and adds a ``SkippedFilesHook``, which
    logs the skipped files and writes ``skipped_files.json`` to the work
    dir. A skipped sample's label is all ignore index: it adds nothing to
    the IoU metrics.

    Returns:
        int: the number of loading transforms changed.

    Raises:
        ValueError: if the pipeline has no checked loading transform.
    """
    count = _skip_in((cfg.get(dataloader) or {}).get('dataset'))
    if count == 0:
        raise ValueError(
            f'the {dataloader} pipeline has no {" or ".join(CHECKED_LOADERS)}'
            ': no file is checked, so none can be skipped'
        )
    hooks = list(cfg.get('custom_hooks', None) or [])
    if not any(h.get('type') == 'SkippedFilesHook' for h in hooks):
        hooks.append(dict(type='SkippedFilesHook'))
    cfg['custom_hooks'] = hooks
    return count
