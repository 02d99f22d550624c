"""The addons' OWL templates use Odoo 19's idioms (docs: odoo19-notes.md): ``t-out``, not the deprecated ``t-esc``.

An extension may still set ``t-esc`` through ``<attribute name="t-esc">`` where Odoo's own element carries it (a
second directive beside it would not replace it).
"""
import glob
import os
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_templates_write_with_t_out():
    found = []
    for path in sorted(glob.glob(os.path.join(ROOT, 'epilot_outlook*', 'static', 'src', '**', '*.xml'),
                                 recursive=True)):
        for element in ET.parse(path).iter():
            if 't-esc' in element.attrib:
                found.append('%s: <%s t-esc="%s">' % (os.path.relpath(path, ROOT), element.tag, element.get('t-esc')))
    assert not found, found
