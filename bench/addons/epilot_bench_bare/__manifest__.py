{
    'name': "epilot_outlook bench: a bare route",
    'version': '19.0.1.0.0',
    'summary': "Bench-only: the bare auth='none' route bench/bench_webhook.py compares the webhook with. Never "
               "install it in production (it lives outside the addon).",
    'author': "epilot",
    'license': 'LGPL-3',
    'depends': ['base'],
    'installable': True,
}
