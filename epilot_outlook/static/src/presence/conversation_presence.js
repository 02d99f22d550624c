import { _t } from "@web/core/l10n/translation";
import { browser } from "@web/core/browser/browser";
import { registry } from "@web/core/registry";
import { user } from "@web/core/user";
import { useService } from "@web/core/utils/hooks";
import { standardWidgetProps } from "@web/views/widgets/standard_widget_props";
import { Component, onMounted, onWillUnmount, useEffect, useState } from "@odoo/owl";
import { CONVERSATION_MODEL, PRESENCE_TYPE, presenceChannel, presenceSessions } from "./presence_session";

// Announced again this often while the conversation is open; a colleague not heard of for HEARD_FOR is gone
// (a closed laptop says nothing).
const HEARTBEAT = 30000;
const HEARD_FOR = 75000;

/**
 * The colleagues who have this conversation open ("Ann is viewing", "Ann is writing a reply"), and this user's
 * presence for them: announced on opening (the others answer with theirs), while writing, and on leaving,
 * through Odoo's bus on the conversation's presence channel (members of the inbox only, checked on the server).
 */
export class ConversationPresence extends Component {
    static template = "epilot_outlook.ConversationPresence";
    static props = { ...standardWidgetProps };

    setup() {
        this.orm = useService("orm");
        this.busService = useService("bus_service");
        this.state = useState({ others: {}, seen: null });
        this.writing = false;
        this.onNotification = this.onNotification.bind(this);
        this.onPageHide = this.onPageHide.bind(this);
        onMounted(() => {
            this.busService.subscribe(PRESENCE_TYPE, this.onNotification);
            this.interval = browser.setInterval(() => this.heartbeat(), HEARTBEAT);
            browser.addEventListener("pagehide", this.onPageHide);
        });
        onWillUnmount(() => {
            this.busService.unsubscribe(PRESENCE_TYPE, this.onNotification);
            browser.clearInterval(this.interval);
            browser.removeEventListener("pagehide", this.onPageHide);
        });
        useEffect(
            (resId) => {
                if (!resId) {
                    return;
                }
                this.join(resId);
                return () => this.leave(resId);
            },
            () => [this.props.record.resId]
        );
    }

    get others() {
        return Object.values(this.state.others).map((other) => ({
            ...other,
            label:
                other.state === "writing"
                    ? _t("%(name)s is writing a reply", { name: other.name })
                    : _t("%(name)s is viewing", { name: other.name }),
        }));
    }

    join(resId) {
        this.state.others = {};
        this.state.seen = null;
        this.writing = false;
        const session = {
            seenMessageId: null,
            setWriting: (writing) => {
                if (writing !== this.writing && this.props.record.resId === resId) {
                    this.writing = writing;
                    this.announce(resId);
                }
            },
        };
        presenceSessions.set(resId, session);
        this.busService.addChannel(presenceChannel(resId));
        this.announce(resId, { hello: true }).then((result) => {
            if (result && session.seenMessageId === null) {
                session.seenMessageId = result.seen_message_id;
                this.state.seen = result.seen_message_id;
                for (const payload of result.present) {
                    this.onNotification(payload);
                }
            }
        });
    }

    leave(resId) {
        presenceSessions.delete(resId);
        this.busService.deleteChannel(presenceChannel(resId));
        this.announce(resId, { state: "left" });
    }

    async announce(resId, { state, hello = false } = {}) {
        state = state || (this.writing ? "writing" : "viewing");
        try {
            return await this.orm.silent.call(
                CONVERSATION_MODEL,
                "outlook_announce_presence",
                [[resId], state],
                { hello }
            );
        } catch {
            return null; // presence is a courtesy: never an error dialog
        }
    }

    /** A closed tab or a reload unmounts nothing: say "left" in a request that outlives the page. */
    onPageHide() {
        const resId = this.props.record.resId;
        if (!resId) {
            return;
        }
        const method = "outlook_announce_presence";
        browser.fetch(`/web/dataset/call_kw/${CONVERSATION_MODEL}/${method}`, {
            method: "POST",
            keepalive: true,
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({
                jsonrpc: "2.0",
                method: "call",
                params: { model: CONVERSATION_MODEL, method, args: [[resId], "left"], kwargs: {} },
            }),
        }).catch(() => {});
    }

    heartbeat() {
        const now = Date.now();
        for (const [userId, other] of Object.entries(this.state.others)) {
            if (now - other.heardAt > HEARD_FOR) {
                delete this.state.others[userId];
            }
        }
        if (this.props.record.resId) {
            this.announce(this.props.record.resId);
        }
    }

    onNotification(payload) {
        const resId = this.props.record.resId;
        if (payload.conversation_id !== resId || payload.user_id === user.userId) {
            return;
        }
        if (payload.state === "left") {
            delete this.state.others[payload.user_id];
        } else {
            this.state.others[payload.user_id] = {
                userId: payload.user_id,
                partnerId: payload.partner_id,
                name: payload.name,
                state: payload.state,
                heardAt: Date.now(),
            };
        }
        if (payload.hello) {
            this.announce(resId); // the newcomer learns who is here
        }
    }
}

registry.category("view_widgets").add("epilot_outlook_presence", {
    component: ConversationPresence,
});
