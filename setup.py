from configparser import ConfigParser
import setuptools, shlex

# note: all settings are in settings.ini; edit there, not here
config = ConfigParser(delimiters=['='])
config.read('settings.ini', encoding='utf-8')
cfg = config['DEFAULT']

cfg_keys = 'version description keywords author author_email'.split()
expected = cfg_keys + "lib_name user branch license status min_python audience language".split()
for o in expected: assert o in cfg, "missing expected setting: {}".format(o)
setup_cfg = {o:cfg[o] for o in cfg_keys}

licenses = {
    'apache2': ('Apache Software License 2.0','OSI Approved :: Apache Software License'),
}
statuses = [ '1 - Planning', '2 - Pre-Alpha', '3 - Alpha',
    '4 - Beta', '5 - Production/Stable', '6 - Mature', '7 - Inactive' ]
py_versions = '3.11 3.12 3.13'.split()

def reqs(key): return shlex.split(cfg.get(key, '').strip())
requirements = reqs('requirements')
# every `NAME_requirements` key of settings.ini is an extra: eval (models: torch, transformers...), lab (JupyterLab,
# widgets), dist (dask), dev (tests, docs); `all` is their union and `smollm` the old name of `eval`
extras = {k[:-len('_requirements')]: reqs(k) for k in cfg if k.endswith('_requirements') and k != 'requirements'}
extras['smollm'] = extras['eval']
extras['all'] = sorted({r for v in extras.values() for r in v})
min_python = cfg['min_python']
lic = licenses.get(cfg['license'].lower(), (cfg['license'], None))

setuptools.setup(
    name = cfg['lib_name'],
    license = 'Apache-2.0',
    classifiers = [
        'Development Status :: ' + statuses[int(cfg['status'])],
        'Intended Audience :: ' + cfg['audience'].title(),
        'Natural Language :: ' + cfg['language'].title(),
    ] + ['Programming Language :: Python :: '+o for o in py_versions[py_versions.index(min_python):]],
    url = cfg['git_url'],
    # the repository's data/ (embedded suite, example tables, plans, corpora, adapters, result cubes) ships inside the
    # wheel as safedrift_wb/data/; `safedrift_wb.common.paths.project_data_dir` finds it in a checkout and when installed
    packages = setuptools.find_packages(include=['safedrift_wb', 'safedrift_wb.*']) + ['safedrift_wb.data'],
    package_dir = {'safedrift_wb.data': 'data'},
    package_data = {'safedrift_wb': ['**/*.toml', '**/*.json', '**/*.jsonl', '**/*.csv'], 'safedrift_wb.data': ['**/*']},
    # the drift study's adapters stay in the repository (a hundred MB, for retraining and weight analyses); the wheel
    # keeps the study's plan, exported item results and cube
    exclude_package_data = {'safedrift_wb.data': ['**/__pycache__/*', '**/*.pyc', 'study/adapters/*', 'study/adapters/*/*']},
    include_package_data = False,   # package_data above names every file; MANIFEST.in shapes the sdist only
    install_requires = requirements,
    extras_require = extras,
    python_requires  = '>=' + cfg['min_python'],
    long_description = open('README.md', encoding='utf-8').read(),
    long_description_content_type = 'text/markdown',
    zip_safe = False,
    entry_points = {
        'console_scripts': cfg.get('console_scripts','').split(),
        'nbdev': [f'{cfg.get("lib_path")}={cfg.get("lib_path")}._modidx:d']
    },
    **setup_cfg)
