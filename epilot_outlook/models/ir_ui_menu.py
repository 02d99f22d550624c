from odoo import models


class IrUiMenu(models.Model):
    _inherit = 'ir.ui.menu'

    def _load_menus_blacklist(self):
        """ Override of `base` to show each shared inbox's menu entry to the inbox's members only.

        ``load_menus`` is cached per user, so the list is computed once per user until the inboxes' menus or
        memberships change (:meth:`epilot.shared.inbox._outlook_sync_menus` clears the cache).
        """
        hidden = super()._load_menus_blacklist()
        if self.env.user._is_internal():
            hidden += self.env['epilot.shared.inbox']._outlook_menu_hidden_ids()
        return hidden
