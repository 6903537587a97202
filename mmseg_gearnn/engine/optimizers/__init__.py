from .gear_optim_wrapper_constructor import GearOptimWrapperConstructor

__all__ = ['GearOptimWrapperConstructor']
