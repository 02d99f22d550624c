from odoo import api, fields, models

from .epilot_shared_conversation_compose import CC_KEY

CONVERSATION = 'epilot.shared.conversation'


class MailComposeMessage(models.TransientModel):
    """ Override of `mail`: the full composer of a shared inbox's conversation (opened by Reply, Reply All and
    Forward, ``epilot.shared.conversation._outlook_open_composer``) has a Cc row and keeps the quoted original
    below a template's text. """
    _inherit = 'mail.compose.message'

    epilot_outlook_cc_partner_ids = fields.Many2many(
        string="Cc",
        comodel_name='res.partner',
        relation='mail_compose_message_epilot_outlook_cc_rel',
        help="Copied in Cc of the e-mail the shared mailbox sends.",
    )
    epilot_outlook_quote = fields.Html(
        string="Quoted Original",
        sanitize=True,
        help="Technical: the e-mail answered or forwarded, as quoted below the answer.",
    )

    @api.depends('template_id')
    def _compute_body(self):
        """ Override of `mail`: choosing (or removing) a template keeps the quoted original below its text. """
        super()._compute_body()
        for composer in self.filtered('epilot_outlook_quote'):
            composer.body = (composer.body or '') + composer.epilot_outlook_quote

    def _action_send_mail(self, auto_commit=False):
        """ Override of `mail`: the Cc row's contacts are recipients too, in Cc (the Graph session puts them
        there: ``CC_KEY``); whether the user may send as the mailbox is checked by the conversation's
        ``message_post``, as for any post. """
        composers = self.filtered(lambda composer: composer.model == CONVERSATION and composer.composition_mode ==
                                  'comment' and composer.epilot_outlook_cc_partner_ids)
        if not composers:
            return super()._action_send_mail(auto_commit=auto_commit)
        result = None
        for composer in self:
            cc = composer.epilot_outlook_cc_partner_ids if composer in composers else self.env['res.partner']
            if cc:
                composer.partner_ids |= cc
            composer = composer.with_context(**{CC_KEY: cc.mapped('email_normalized')})
            result = super(MailComposeMessage, composer)._action_send_mail(auto_commit=auto_commit)
        return result
