"""Repository packaging: the licence, and tools/setup_env.sh never letting
pip downgrade what is installed (openmim without its openxlab chain)."""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_apache_license_file_and_setup_metadata():
    text = (REPO / 'LICENSE').read_text()
    assert text.startswith('Copyright 2026 mmdet-odam contributors\n')
    assert 'Apache License\n' in text and 'Version 2.0, January 2004' in text
    # the full text: all nine sections and the appendix, no placeholder left
    for section in range(1, 10):
        assert re.search(rf'^   {section}\. [A-Z]', text, re.M), section
    assert 'END OF TERMS AND CONDITIONS' in text
    assert 'APPENDIX: How to apply the Apache License' in text
    assert '[yyyy]' not in text
    tree = ast.parse((REPO / 'setup.py').read_text())
    setup_call = next(node for node in ast.walk(tree)
                      if isinstance(node, ast.Call) and
                      getattr(node.func, 'id', '') == 'setup')
    license_kw = {k.arg: k.value for k in setup_call.keywords}['license']
    assert ast.literal_eval(license_kw) == 'Apache-2.0'
