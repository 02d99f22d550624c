import re
from urllib.parse import urlsplit

from odoo import api, models
from odoo.exceptions import UserError

from ..outlook_core import const

# System parameter (``ir.config_parameter``: only system administrators read or write it) listing the hosts,
# other than Microsoft's own sign-in and Graph hosts, a connection may point at: ``host:port`` (that port only)
# or ``host`` (any port), separated by commas or spaces. Empty in production; the sandbox's for the demo and tests.
ALLOWED_HOSTS_PARAM = 'epilot_outlook.allowed_hosts'



class EpilotOutlookConnection(models.Model):
    """ The connection's endpoints: the hosts a connection may point at (Microsoft's, or those a system
    administrator allowed), checked before any secret is sent, and the CA bundle its clients trust. """
    _inherit = 'epilot.outlook.connection'

    # === BUSINESS METHODS - ENDPOINTS === #

    @api.model
    def _outlook_allowed_extra_hosts(self):
        """ The hosts beyond Microsoft's that a system administrator allowed (:data:`ALLOWED_HOSTS_PARAM`). """
        value = self.env['ir.config_parameter'].sudo().get_param(ALLOWED_HOSTS_PARAM) or ''
        return {host.lower() for host in re.split(r'[\s,]+', value) if host}

    @api.model
    def _outlook_host_allowed(self, url, microsoft_hosts):
        """ Whether ``url`` is https on one of ``microsoft_hosts`` (default port) or an allowed extra host. """
        parts = urlsplit(url or '')
        try:
            port = parts.port or 443
        except ValueError:
            return False
        host = (parts.hostname or '').lower()
        if parts.scheme != 'https' or not host or '@' in parts.netloc or '\\' in parts.netloc:
            return False
        if host in microsoft_hosts and port == 443:
            return True
        extra = self._outlook_allowed_extra_hosts()
        return host in extra or '%s:%s' % (host, port) in extra

    def _outlook_check_endpoints(self, error_class=UserError):
        """ Refuse an authority host or Graph endpoint that is neither Microsoft's nor allowed by a system
        administrator; checked when they are written and again before any secret is sent. """
        self.ensure_one()
        for url, hosts in ((self.authority_host, const.MICROSOFT_AUTHORITY_HOSTS),
                           (self.graph_endpoint, const.MICROSOFT_GRAPH_HOSTS)):
            if not self._outlook_host_allowed(url, hosts):
                raise error_class(self.env._(
                    "%(url)s is not one of Microsoft's sign-in or Graph addresses (%(hosts)s). A system "
                    "administrator can allow another host, such as a sandbox's, in the system parameter "
                    "%(parameter)s.",
                    url=url, hosts=', '.join(hosts), parameter=ALLOWED_HOSTS_PARAM,
                ))

    def _outlook_ca_bundle(self):
        """ The CA bundle the clients trust (``None``: the system's), whoever runs them: a system administrator
        set it, and editors and agents act through the connection without reading the field themselves. """
        self.ensure_one()
        return self.sudo().ca_bundle or None
