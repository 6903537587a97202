from .class_weighted_ce import ClassWeightedCrossEntropyLoss

__all__ = ['ClassWeightedCrossEntropyLoss']
