from odoo import http


class BenchBareRoute(http.Controller):
    """ The cheapest POST route Odoo serves for a database: no session, no user, no SQL of its own. """

    @http.route('/epilot_bench/bare', type='http', auth='none', methods=['POST'], csrf=False, save_session=False)
    def bare(self, **_kwargs):
        http.request.httprequest.get_data(cache=False)
        return http.request.make_response('', status=202)
