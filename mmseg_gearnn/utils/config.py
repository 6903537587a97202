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
