{
    'name': "Outlook Shared Inboxes - CRM",
    'version': '19.0.1.0.0',
    'category': 'Sales/CRM',
    'summary': "Create or link CRM leads and opportunities from shared inbox conversations.",
    'description': " ",  # Non-empty string to avoid loading a README file as the module description.
    'author': "epilot",
    'license': 'LGPL-3',
    'depends': ['epilot_outlook', 'crm'],
    'data': [
        'views/epilot_outlook_crm_views.xml',
    ],
    'assets': {
        'web.assets_tests': [
            'epilot_outlook_crm/static/tests/tours/**/*',
        ],
    },
    'auto_install': True,
    'installable': True,
}
