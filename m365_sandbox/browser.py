"""A non-interactive browser for the sandbox's sign-in and consent pages (plain HTML forms, no JavaScript).

``sign_in(session, auth_uri, username, password)`` follows an authorize or adminconsent URL, fills the sign-in
form (``login``/``passwd``), approves MFA (``mfa=approve``) and answers consent (``consent=accept|cancel``)
until the sandbox redirects to the app's redirect URI; it returns ``(final_url, params)``. Tests of the sandbox
and of the addon, and demo scripts, use it to stand in for a person at the keyboard.
"""
from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit


class FormParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.action, self.fields, self.buttons, self.error = None, {}, {}, None
        self._in_error = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")
        elif tag == "button" and a.get("name"):
            self.buttons.setdefault(a["name"], []).append(a.get("value", ""))
        elif a.get("id") == "error":
            self._in_error = True

    def handle_data(self, data):
        if self._in_error:
            self.error = (self.error or "") + data

    def handle_endtag(self, tag):
        self._in_error = False


def parse_page(text: str) -> FormParser:
    parser = FormParser()
    parser.feed(text)
    return parser


def sign_in(session, auth_uri: str, username: str, password: str, consent: str = "accept",
            max_steps: int = 6):
    """Drive the pages; returns ``(redirect_location, params)``; params merge the query and fragment.

    Raises ``AssertionError`` with the page's error text when the sandbox stops on an error page.
    """
    resp = session.get(auth_uri, allow_redirects=False)
    url = auth_uri
    for _ in range(max_steps):
        if resp.status_code in (301, 302, 303):
            location = resp.headers["Location"]
            parts = urlsplit(location)
            return location, {**dict(parse_qsl(parts.query)), **dict(parse_qsl(parts.fragment))}
        page = parse_page(resp.text)
        if page.error:
            raise AssertionError(f"sign-in stopped ({resp.status_code}): {page.error}")
        if page.action is None:
            raise AssertionError(f"stopped on a page without a form ({resp.status_code}): {page.error!r}")
        data = dict(page.fields)
        if "passwd" in data:
            data.update(login=username, passwd=password)
        elif "mfa" in page.buttons:
            data["mfa"] = "approve"
        elif "consent" in page.buttons:
            data["consent"] = consent
        target = urljoin(url, page.action)
        if target.startswith("http://") or "passwd" not in data and "tx" not in data:
            # form_post response: the form posts to the app's redirect URI
            return target, data
        resp = session.post(target, data=data, allow_redirects=False)
        url = target
    raise AssertionError("too many sign-in steps")
