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


# ---- fixtures shared by several test files: built once per session, each variant cached by its arguments ----
import json
import numpy as np
import pytest


def _key(name, kw): return name + json.dumps(kw, sort_keys=True, default=str)


class TinyModels:
    "Tiny local models and LoRA adapters made on first request, reused by every test that asks for the same one."
    def __init__(self, root):
        self.root, self.made = root, {}

    def model(self, name:str='tiny', **kw):
        "A tiny Llama-style checkpoint folder (`safedrift_wb.engine.tiny.make_tiny_model` with `kw`)."
        from safedrift_wb.engine.tiny import make_tiny_model
        k = _key(name, kw)
        if k not in self.made: self.made[k] = make_tiny_model(self.root/f'model-{len(self.made)}'/name, **kw)
        return self.made[k]

    def adapter(self, name:str, base, **kw):
        "A LoRA adapter folder for the tiny model `base` (`make_tiny_adapter` with `kw`)."
        from safedrift_wb.engine.tiny import make_tiny_adapter
        k = _key(name, dict(kw, base=str(base)))
        if k not in self.made: self.made[k] = make_tiny_adapter(self.root/f'adapter-{len(self.made)}'/name, base, **kw)
        return self.made[k]


@pytest.fixture(scope='session')
def tiny_models(tmp_path_factory):
    "Factory of tiny models and adapters (`tiny_models.model(name, **kw)`, `tiny_models.adapter(name, base, **kw)`)."
    return TinyModels(tmp_path_factory.mktemp('tiny-models'))


@pytest.fixture(scope='session')
def example_data():
    "The bundled example's (item results, model table)."
    from safedrift_wb.example import load_example
    return load_example()


@pytest.fixture(scope='session')
def example_cube(example_data):
    "Factory of drift cubes of the bundled example: `example_cube(n_boot=200, seed=1, ...)`, each built once."
    from safedrift_wb.cube import build_cube
    made = {}
    def make(**kw):
        k = _key('cube', kw)
        if k not in made: made[k] = build_cube(*example_data, **kw)
        return made[k]
    return make


@pytest.fixture(scope='session')
def example_transcripts(example_data):
    "Factory of transcripts of the example's harmful-request items: `example_transcripts(prompt, refused, complied)`."
    from safedrift_wb.views.transcripts import TRANSCRIPT_COLUMNS
    items, _ = example_data
    hr = items[(items.benchmark == 'harmful-refusal') & (items.metric == 'refusal_rate')]
    def make(prompt:str, refused:str, complied:str):
        "Prompts are `prompt + item id`; a refused item's response is `refused`, any other `complied`."
        return hr.assign(prompt=prompt + hr['item'], response=np.where(hr.value == 1, refused, complied)
                         ).rename(columns={'value': 'refusal_rate'})[TRANSCRIPT_COLUMNS + ['refusal_rate']]
    return make


def plan_text(models, *, benchmarks, limit:int, max_new_tokens:int, suite:str='none', extra:str='') -> str:
    "An evaluation plan's TOML: [generation], [benchmarks], one [[models]] table per dict of `models`, then `extra`."
    lines = ['[generation]', f'max_new_tokens = {max_new_tokens}', '[benchmarks]', f'suite = {json.dumps(suite)}',
             f'ids = {json.dumps(list(benchmarks))}', f'limit = {limit}']
    for m in models:
        lines += ['[[models]]'] + [f'{k} = {json.dumps(str(v))}' for k, v in m.items()]
    return '\n'.join(lines) + '\n' + extra


def tiny_family(base, lora) -> list[dict]:
    "The `[[models]]` of a tiny root and one LoRA derivative of it (medical)."
    return [dict(id='tiny', path=base, family='tiny'),
            dict(id='tiny-lora', path=base, adapter=lora, base='tiny', family='tiny', domain='medical', method='lora')]


# ---- runs on several processes or machines (tests/test_shard.py, test_slurm.py, test_dask.py) ----
def assert_same_run(a_dir, b_dir):
    "Two run directories hold the same units: item values and generated texts identical, unit for unit."
    import pandas as pd
    from safedrift_wb.runs import load_run, load_transcripts
    key = ['model', 'benchmark', 'item', 'metric']
    a, b = load_run(a_dir)[0], load_run(b_dir)[0]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True))
    ta, tb = (load_transcripts(d).sort_values(['model', 'benchmark', 'item']).reset_index(drop=True) for d in (a_dir, b_dir))
    # log-likelihoods are float32 sums whose last bits depend on the process's thread count (a Slurm task or a Dask
    # worker may run with more threads than the local run): they must agree to 1e-5; every text and value exactly
    ll = [c for c in ('loglikelihoods',) if c in ta.columns]
    pd.testing.assert_frame_equal(ta.drop(columns=ll), tb.drop(columns=ll))
    num = lambda v: np.asarray(json.loads(v) if isinstance(v, str) else v, float)   # stored as JSON lists
    for c in ll:
        for x, y in zip(ta[c], tb[c]):
            assert (x is None) == (y is None), (x, y)
            assert x is None or np.allclose(num(x), num(y), rtol=1e-5, atol=1e-5, equal_nan=True), (x, y)


def assert_same_cubes(a_path, b_path):
    "Two cube files hold the same numbers (coordinates and every data variable; provenance attributes aside)."
    from safedrift_wb.cube import load_cube
    a, b = load_cube(a_path), load_cube(b_path)
    assert set(a.data_vars) == set(b.data_vars) and dict(a.sizes) == dict(b.sizes)
    for c in a.coords: np.testing.assert_array_equal(a[c].values, b[c].values, err_msg=c)
    for v in a.data_vars: np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=v)
