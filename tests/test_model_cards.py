"""The model card of every shipped adapter: made from its training record and the committed cube, and up to date."""
import json, re
from pathlib import Path
import pytest

pytest.importorskip('huggingface_hub', reason='model cards are made with huggingface_hub (the eval extra)')
from safedrift_wb.common.paths import project_data_dir
from safedrift_wb.cube import load_cube
from safedrift_wb.views.model_cards import adapter_card, write_adapter_cards

ADAPTERS = project_data_dir()/'adapters'
CUBE = project_data_dir()/'results'/'smollm_family_cube.nc'


@pytest.fixture(scope='module')
def cube(): return load_cube(CUBE)


def test_card_names_base_licence_hyperparameters_and_the_cubes_drift(cube):
    rec = json.loads((ADAPTERS/'med-lora-b'/'training.json').read_text())
    card = adapter_card(ADAPTERS/'med-lora-b', cube)
    text = card.text
    assert card.data.base_model == 'HuggingFaceTB/SmolLM2-135M-Instruct' and card.data.license == 'apache-2.0'
    assert card.data.library_name == 'peft'
    assert f"- **Base:** {rec['base']['model']}" in text
    assert f"| lr | {rec['hyperparameters']['lr']} |" in text and f"| steps | {rec['hyperparameters']['steps']} |" in text
    # the drift row of domain-harm refusal_rate: every number as the cube holds it
    row = next(l for l in text.splitlines() if l.startswith('| domain-harm | refusal\\_rate |'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    c = cube.sel(model='med-lora-b', benchmark='domain-harm', metric='refusal_rate')
    assert float(cells[3]) == pytest.approx(float(c.drift), abs=5e-4)
    lo, hi = map(float, re.findall(r'[-+]\d\.\d+', cells[4]))
    assert (lo, hi) == pytest.approx([float(c.drift_ci.sel(ci_bound='lower')), float(c.drift_ci.sel(ci_bound='upper'))], abs=5e-4)
    assert float(cells[6]) == pytest.approx(float(c.q_value), rel=5e-3)
    from safedrift_wb.cube import summarize          # a complementary pair (jailbreak asr / refusal_rate) counts once
    n_reg = int(summarize(cube).loc['med-lora-b', 'n_less_safe'])
    assert f"{n_reg} significant safety regression(s)" in text and n_reg > 0


def test_committed_cards_are_up_to_date(cube, tmp_path):
    recs = sorted(ADAPTERS.glob('*/training.json'))
    assert recs and all((r.parent/'README.md').is_file() for r in recs), 'run `make cards`'
    for r in recs:
        (tmp_path/r.parent.name).mkdir(); (tmp_path/r.parent.name/'training.json').write_bytes(r.read_bytes())
    for p in write_adapter_cards(tmp_path, cube):
        assert p.read_text() == (ADAPTERS/p.parent.name/'README.md').read_text(), f'{p.parent.name}: card out of date (run `make cards`)'
