""" ``UserError``s whose dialog says what happened in its title.

Odoo's web client titles the dialog of every ``UserError`` "Invalid Operation" (``odooExceptionTitleMap`` in
``web/static/src/core/errors/error_dialogs.js``), also for a refusal that is nobody's mistake (Microsoft will not
let Odoo open a mailbox). The error handler picks a dialog by the exception's name or by
``context['exception_class']`` of the serialized error (``odoo.http.serialize_exception`` sends the exception's
``context``); ``static/src/errors/titled_error_dialog.js`` registers the dialog of these under that key, and it
shows ``context['title']``.
"""
from odoo.exceptions import UserError


class TitledUserError(UserError):
    """ A ``UserError`` shown in a dialog titled ``title``.

    :param str message: What happened and what to do, translated.
    :param str title: The dialog's title, translated.
    """
    exception_class = 'epilot_outlook.titled_user_error'

    def __init__(self, message, title, **details):
        super().__init__(message)
        self.title = title
        # Serialized to the web client as the error's data.context.
        self.context = {'exception_class': self.exception_class, 'title': title, **details}


class ReplyConflict(TitledUserError):
    """ A reply refused because someone else's reply went out since the agent opened the conversation; the web
    client asks "Send anyway?" and posts again with ``epilot_outlook_send_anyway``. ``details`` name the reply
    (``message_id``, ``author``). """
    exception_class = 'epilot_outlook.reply_conflict'
