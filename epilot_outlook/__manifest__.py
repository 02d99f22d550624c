{
    'name': "Outlook Shared Inboxes",
    'version': '19.0.1.0.0',
    'category': 'Productivity/Discuss',
    'sequence': 250,
    'summary': "Bring Microsoft 365 shared mailboxes into Odoo through Microsoft Graph.",
    'description': " ",  # Non-empty string to avoid loading a README file as the module description.
    'author': "epilot",
    'license': 'LGPL-3',
    'depends': ['mail', 'resource'],
    'external_dependencies': {
        'python': ['msal', 'cryptography', 'requests'],
    },
    'data': [
        'security/epilot_outlook_security.xml',
        'security/ir.model.access.csv',

        'data/ir_cron_data.xml',
        'data/epilot_outlook_answers_data.xml',
        'data/epilot_outlook_triage_data.xml',
        'security/epilot_outlook_triage_security.xml',

        'views/epilot_outlook_connection_views.xml',
        'views/epilot_outlook_email_address_views.xml',
        'views/epilot_shared_inbox_views.xml',
        'views/epilot_shared_conversation_views.xml',
        'views/epilot_shared_conversation_presence_views.xml',
        'views/epilot_outlook_menus.xml',  # After the views: the menus open their actions.
        'views/epilot_shared_conversation_report_views.xml',   # its menu goes under the app's
        'views/epilot_outlook_templates.xml',
        'views/epilot_outlook_erase_wizard_views.xml',
        'views/ir_mail_server_views.xml',
        'views/mail_compose_message_views.xml',
        'views/epilot_conversation_merge_wizard_views.xml',
        'views/res_partner_views.xml',
        'views/epilot_outlook_triage_views.xml',
    ],
    'assets': {
        'web.assets_backend': [
            'epilot_outlook/static/src/**/*',
        ],
        'web.assets_tests': [
            'epilot_outlook/static/tests/tours/**/*',
        ],
    },
    'application': True,
    'installable': True,
}
