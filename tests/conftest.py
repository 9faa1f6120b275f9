import os
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')

try:   # property tests: the same examples on every run, and no per-example deadline on a busy machine
    from hypothesis import settings
    settings.register_profile('safedrift', derandomize=True, deadline=None)
    settings.load_profile('safedrift')
except ImportError:
    pass
