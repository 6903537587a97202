from .pipeline import evaluate_levels, last_checkpoint, run_gearnn, train

__all__ = ['evaluate_levels', 'last_checkpoint', 'run_gearnn', 'train']
