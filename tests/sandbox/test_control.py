"""The control API (``/control`` on the graph app), driven over HTTPS like a test or a demo would."""
from signin import assert_aad, grant_consent, login, refresh


def ctl(sandbox, http, path, body=None, method="POST", status=200):
    resp = http.request(method, f"{sandbox.control_base}{path}", json=body)
    assert resp.status_code == status, resp.text
    return resp.json()


def demo_seed(sandbox, http):
    return ctl(sandbox, http, "/seed", {"profile": "demo", "messages": False})


def test_seed_demo_state_and_reset(sandbox, http):
    demo = demo_seed(sandbox, http)
    assert demo["tenant_domain"] == "contoso.onmicrosoft.com"
    assert demo["client_id"] and demo["client_secret"]
    assert demo["service_account"]["username"] == "svc-helpdesk@contoso.onmicrosoft.com"
    assert set(demo["shared_mailboxes"]) == {f"{n}@contoso.onmicrosoft.com" for n in ("support", "billing",
                                                                                       "sales", "hr")}
    state = ctl(sandbox, http, "/state", method="GET")
    assert [t["id"] for t in state["tenants"]] == [demo["tenant_id"]]
    perms = {(p["mailbox"].split("@")[0], p["full_access"], p["send_as"], p["send_on_behalf"])
             for p in state["permissions"]}
    assert perms == {("support", True, True, False), ("billing", True, True, False), ("sales", False, False, True)}
    assert state["apps"][0]["redirect_uris"] == ["http://127.0.0.1:8069/epilot_outlook/oauth/callback",
                                                 "http://localhost:8069/epilot_outlook/oauth/callback"]
    assert ctl(sandbox, http, "/reset") == {"reset": True}
    assert ctl(sandbox, http, "/state", method="GET")["tenants"] == []


def test_explicit_seed_and_permissions(sandbox, http):
    result = ctl(sandbox, http, "/seed", {
        "tenant": {"domain": "fabrikam.onmicrosoft.com"},
        "app": {"redirect_uris": ["https://odoo.example/cb"], "secret": "s3cret"},
        "users": [{"upn": "ops@fabrikam.onmicrosoft.com", "password": "pw", "admin": True}],
        "shared_mailboxes": [{"upn": "desk@fabrikam.onmicrosoft.com"}]})
    assert result["client_secret"] == "s3cret"
    assert result["users"]["ops@fabrikam.onmicrosoft.com"]["password"] == "pw"
    perm = ctl(sandbox, http, "/permissions", {"mailbox": "desk@fabrikam.onmicrosoft.com",
                                               "user": "ops@fabrikam.onmicrosoft.com", "send_as": True})
    assert perm["send_as"] and not perm["full_access"]
    ctl(sandbox, http, "/permissions", {"mailbox": "nobody@x", "user": "ops@fabrikam.onmicrosoft.com"}, status=404)
    ctl(sandbox, http, "/seed", {"profile": "nope"}, status=400)
    resp = http.post(f"{sandbox.control_base}/settings", data="{not json")
    assert resp.status_code == 400


def test_consent_revoke_refresh_fails_65001_and_hooks_run(sandbox, http):
    demo = demo_seed(sandbox, http)
    grant_consent(sandbox.state, demo)
    _, result = login(sandbox, http, demo)
    seen = []
    sandbox.state.extra.setdefault("on_consent_revoked", []).append(lambda st, tid, cid: seen.append((tid, cid)))
    out = ctl(sandbox, http, f"/tenants/{demo['tenant_domain']}/consent/revoke")
    assert out == {"revoked": [demo["client_id"]]}
    assert seen == [(demo["tenant_id"], demo["client_id"])]
    events = ctl(sandbox, http, "/state", method="GET")["consent_revoked_events"]
    assert [(e["tenant_id"], e["client_id"]) for e in events] == seen
    assert_aad(refresh(sandbox, demo, result["refresh_token"]), "invalid_grant", 65001, "consent_required")
    # §7.7: the access token issued before the revocation keeps working on Graph until it expires
    assert graph_me(sandbox, http, result["access_token"]).status_code == 200
    ctl(sandbox, http, "/clock/advance", {"seconds": 3601})
    expired = graph_me(sandbox, http, result["access_token"])
    assert expired.status_code == 401 and expired.json()["error"]["code"] == "InvalidAuthenticationToken"
    ctl(sandbox, http, "/tenants/nowhere/consent/revoke", status=404)


def graph_me(sandbox, http, access_token):
    return http.get(f"{sandbox.graph_base}/me", headers={"Authorization": f"Bearer {access_token}"})


def test_disabled_user_access_token_is_401_on_graph(sandbox, http):
    demo, result, svc = signed_in(sandbox, http)
    me = graph_me(sandbox, http, result["access_token"])
    assert me.status_code == 200 and me.json()["userPrincipalName"] == svc
    ctl(sandbox, http, f"/users/{svc}/disable")
    resp = graph_me(sandbox, http, result["access_token"])
    assert resp.status_code == 401 and "WWW-Authenticate" in resp.headers


def signed_in(sandbox, http):
    demo = demo_seed(sandbox, http)
    grant_consent(sandbox.state, demo)
    _, result = login(sandbox, http, demo)
    return demo, result, demo["service_account"]["username"]


def test_user_switches_break_refresh_with_their_codes(sandbox, http):
    demo, result, svc = signed_in(sandbox, http)
    rt = result["refresh_token"]
    for path, body, error, code in (("disable", None, "invalid_grant", 50057),
                                    ("mfa", {"required": True}, "invalid_grant", 50076),
                                    ("conditional-access", {"blocked": True}, "invalid_grant", 53003)):
        ctl(sandbox, http, f"/users/{svc}/{path}", body)
        assert_aad(refresh(sandbox, demo, rt), error, code)
        undo = {"disable": ("enable", None), "mfa": ("mfa", {"required": False}),
                "conditional-access": ("conditional-access", {"blocked": False})}[path]
        ctl(sandbox, http, f"/users/{svc}/{undo[0]}", undo[1])
        assert "access_token" in refresh(sandbox, demo, rt)


def test_reset_password_is_50173_and_revoke_sessions_is_70008(sandbox, http):
    demo, result, svc = signed_in(sandbox, http)
    events = []
    sandbox.state.extra.setdefault("on_user_event", []).append(lambda st, uid, ev: events.append(ev))
    out = ctl(sandbox, http, f"/users/{svc}/reset-password", {"password": "N3w-pass"})
    assert out["password"] == "N3w-pass"
    assert_aad(refresh(sandbox, demo, result["refresh_token"]), "invalid_grant", 50173)
    demo["service_account"]["password"] = "N3w-pass"
    _, again = login(sandbox, http, demo)
    assert "access_token" in refresh(sandbox, demo, again["refresh_token"])
    ctl(sandbox, http, f"/users/{demo['service_account']['id']}/revoke-sessions")
    assert_aad(refresh(sandbox, demo, again["refresh_token"]), "invalid_grant", 70008)
    ctl(sandbox, http, f"/users/{svc}/disable")
    assert events == ["password_reset", "sessions_revoked", "disabled"]


def test_clock_advance_ages_refresh_tokens_700082(sandbox, http):
    demo, result, _ = signed_in(sandbox, http)
    out = ctl(sandbox, http, "/clock/advance", {"days": 91})
    assert out["clock_offset_seconds"] == 91 * 86400
    assert_aad(refresh(sandbox, demo, result["refresh_token"]), "invalid_grant", 700082, "bad_token")


def test_expired_secret_7000222_then_a_new_secret_works(sandbox, http):
    demo, result, _ = signed_in(sandbox, http)
    assert ctl(sandbox, http, f"/apps/{demo['client_id']}/secret/expire")["expired"] == 1
    assert_aad(refresh(sandbox, demo, result["refresh_token"]), "invalid_client", 7000222)
    new = ctl(sandbox, http, f"/apps/{demo['client_id']}/secrets")["client_secret"]
    assert "access_token" in refresh(sandbox, {**demo, "client_secret": new}, result["refresh_token"])


def test_settings_and_faults_merge_and_null_removes(sandbox, http):
    settings = ctl(sandbox, http, "/settings", {"aad_scope_echo": "as_requested"})
    assert settings["aad_scope_echo"] == "as_requested" and "access_token_lifetime_s" in settings
    faults = ctl(sandbox, http, "/faults", {"token_endpoint": {"status": 500, "times": 1}})
    assert faults == {"token_endpoint": {"status": 500, "times": 1}}
    assert ctl(sandbox, http, "/faults", {"token_endpoint": None}) == {}
    assert ctl(sandbox, http, "/faults", method="GET") == {}
