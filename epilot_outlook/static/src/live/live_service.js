import { registry } from "@web/core/registry";

/**
 * Live screens (issue 19): the server sends one bus notification per transaction that changed conversations
 * (an import batch, a colleague's reply, an assignment, a status change) to each user who may read them, and one
 * per transaction that changed an address's sync to its editors. This service turns them into events on the
 * web client's bus, which the open views (``live_views.js``) and the inbox menu counters follow.
 *
 * The notifications name records only; the views read what changed through the ORM, with the user's rights.
 */
export const LIVE_CONVERSATIONS = "EPILOT_OUTLOOK:LIVE-CONVERSATIONS";
export const LIVE_ADDRESSES = "EPILOT_OUTLOOK:LIVE-ADDRESSES";

export const epilotOutlookLiveService = {
    dependencies: ["bus_service"],
    start(env, { bus_service }) {
        bus_service.subscribe("epilot_outlook/conversations", (payload) => {
            env.bus.trigger(LIVE_CONVERSATIONS, payload);
            // The inbox menu counters (navbar/inbox_menu_counters.js) refresh on this one.
            env.bus.trigger("EPILOT_OUTLOOK:UNREAD-CHANGED");
        });
        bus_service.subscribe("epilot_outlook/addresses", (payload) => {
            env.bus.trigger(LIVE_ADDRESSES, payload);
        });
        bus_service.start();
    },
};

registry.category("services").add("epilot_outlook_live", epilotOutlookLiveService);
