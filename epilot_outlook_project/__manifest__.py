{
    'name': "Outlook Shared Inboxes - Project",
    'version': '19.0.1.0.0',
    'category': 'Services/Project',
    'summary': "Create or link project tasks from shared inbox conversations.",
    'description': " ",  # Non-empty string to avoid loading a README file as the module description.
    'author': "epilot",
    'license': 'LGPL-3',
    'depends': ['epilot_outlook', 'project'],
    'data': [
        'views/epilot_outlook_project_views.xml',
    ],
    'assets': {
        'web.assets_tests': [
            'epilot_outlook_project/static/tests/tours/**/*',
        ],
    },
    'auto_install': True,
    'installable': True,
}
