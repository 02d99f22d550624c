import { NavBar } from "@web/webclient/navbar/navbar";
import { patch } from "@web/core/utils/patch";
import { user } from "@web/core/user";
import { onWillUnmount, useState } from "@odoo/owl";

/**
 * The unread count next to each shared inbox's menu entry. Menus are static and cached per user, so the
 * counts come from the server apart (``epilot.shared.inbox.get_inbox_menu_counters``): when the app opens,
 * after each action and when a conversation was read.
 */
patch(NavBar.prototype, {
    setup() {
        super.setup();
        this.inboxCounters = useState({});
        const refresh = () => this.refreshInboxCounters();
        for (const event of ["MENUS:APP-CHANGED", "ACTION_MANAGER:UI-UPDATED", "EPILOT_OUTLOOK:UNREAD-CHANGED"]) {
            this.env.bus.addEventListener(event, refresh);
        }
        onWillUnmount(() => {
            for (const event of ["MENUS:APP-CHANGED", "ACTION_MANAGER:UI-UPDATED", "EPILOT_OUTLOOK:UNREAD-CHANGED"]) {
                this.env.bus.removeEventListener(event, refresh);
            }
        });
        refresh();
    },

    async refreshInboxCounters() {
        const app = this.menuService.getCurrentApp();
        if (app?.xmlid !== "epilot_outlook.epilot_outlook_menu_root" || !user.userId) {
            return;
        }
        const counters = await this.env.services.orm.silent.call(
            "epilot.shared.inbox", "get_inbox_menu_counters", []
        );
        Object.assign(this.inboxCounters, counters);
    },

    inboxMenuLabel(item) {
        const count = this.inboxCounters[item.id];
        return count ? `${item.name} (${count})` : item.name;
    },
});
