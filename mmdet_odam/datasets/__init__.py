from .synthetic_crowd import (SYNTHETIC_CROWD_CLASSES, crowd_fraction,
                              crowd_mask, generate_synthetic_crowd,
                              synthetic_crowd_classes)

__all__ = [
    'SYNTHETIC_CROWD_CLASSES', 'synthetic_crowd_classes',
    'generate_synthetic_crowd', 'crowd_mask', 'crowd_fraction'
]
