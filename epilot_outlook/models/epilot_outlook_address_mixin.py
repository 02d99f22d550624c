from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools.mail import single_email_re


class EpilotOutlookAddressMixin(models.AbstractModel):
    """ An `email` field holding one bare SMTP address, stored stripped and lower-cased.

    Exchange compares SMTP addresses case-insensitively, so two spellings of one mailbox must be stored
    alike for uniqueness and matching to work. Models that need the address can make it required.
    """
    _name = 'epilot.outlook.address.mixin'
    _description = "Outlook Address Mixin"

    email = fields.Char(string="Email Address")

    # === CONSTRAINT METHODS === #

    @api.constrains('email')
    def _check_email(self):
        """ Check that the address, when set, is one bare address (``ops@contoso.com``, not ``Ops <ops@…>``).

        :return: None
        :raise ValidationError: If an address is not valid.
        """
        for record in self:
            if record.email and not single_email_re.match(record.email):
                raise ValidationError(self.env._(
                    "%(email)s is not a valid email address. Enter the mailbox address alone, "
                    "e.g. support@contoso.com.",
                    email=record.email,
                ))

    # === CRUD METHODS === #

    @api.model_create_multi
    def create(self, vals_list):
        """ Override of `base` to store the address in its canonical form. """
        for vals in vals_list:
            if 'email' in vals:
                vals['email'] = self._outlook_normalize_email(vals['email'])
        return super().create(vals_list)

    def write(self, vals):
        """ Override of `base` to store the address in its canonical form. """
        if 'email' in vals:
            vals = dict(vals, email=self._outlook_normalize_email(vals['email']))
        return super().write(vals)

    # === BUSINESS METHODS === #

    @api.model
    def _outlook_normalize_email(self, email):
        """ Return the canonical form of an address: stripped and lower-cased.

        :param str email: The address as typed, or a falsy value.
        :return: The normalized address, or the falsy value unchanged.
        :rtype: str
        """
        return email.strip().lower() if isinstance(email, str) else email
